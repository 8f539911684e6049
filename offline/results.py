"""Writing evaluation results: the per-cell CSV, the per-episode Parquet and trace files (all atomic)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from autotts.controllers.atomic import atomic_path, write_text_atomic

from .evaluate import CellResult

__all__ = ["RESULT_COLUMNS", "write_episodes", "write_results_csv", "write_traces"]

RESULT_COLUMNS = ["controller", "beta", "params", "model", "dataset", "accuracy_pct", "avg_tokens", "episodes",
                  "failed", "avg_branches", "avg_probes", "wall_s", "spec", "store"]


def write_results_csv(path: str | Path, cells: list[CellResult]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for cell in cells:
        writer.writerow(cell.row())
    write_text_atomic(path, buf.getvalue())


def write_episodes(path: str | Path, cells: list[CellResult]) -> None:
    """One row per episode: controller, beta, model, dataset, question, seed, answer, correct, tokens, ..."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {k: [] for k in ("controller", "spec", "beta", "model", "dataset", "question", "seed",
                                             "answer", "correct", "tokens", "branches", "probes", "steps",
                                             "budget_exhausted", "error")}
    for cell in cells:
        for e in cell.episodes:
            for k, v in (("controller", cell.controller), ("spec", cell.spec), ("beta", cell.beta),
                         ("model", cell.model), ("dataset", cell.dataset), ("question", e.question),
                         ("seed", e.seed), ("answer", e.answer), ("correct", e.correct), ("tokens", e.tokens),
                         ("branches", e.branches), ("probes", e.probes), ("steps", e.steps),
                         ("budget_exhausted", e.budget_exhausted), ("error", e.error)):
                cols[k].append(v)
    schema = pa.schema([("controller", pa.string()), ("spec", pa.string()), ("beta", pa.float64()),
                        ("model", pa.string()), ("dataset", pa.string()), ("question", pa.int32()),
                        ("seed", pa.int32()), ("answer", pa.string()), ("correct", pa.bool_()),
                        ("tokens", pa.int64()), ("branches", pa.int32()), ("probes", pa.int32()),
                        ("steps", pa.int32()), ("budget_exhausted", pa.bool_()), ("error", pa.string())])
    table = pa.table(cols, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def write_traces(directory: str | Path, cells: list[CellResult]) -> list[Path]:
    """One JSONL file per cell, one line per traced episode."""
    directory = Path(directory)
    written = []
    for cell in cells:
        traced = [e for e in cell.episodes if e.trace]
        if not traced:
            continue
        lines = [json.dumps({"controller": cell.controller, "spec": cell.spec, "beta": cell.beta,
                             "model": cell.model, "dataset": cell.dataset, "question": e.question, "seed": e.seed,
                             "answer": e.answer, "correct": e.correct, "tokens": e.tokens, "trace": e.trace})
                 for e in traced]
        path = directory / f"{_slug(cell.spec)}__{_slug(cell.model)}__{_slug(cell.dataset)}.jsonl"
        write_text_atomic(path, "\n".join(lines) + "\n")
        written.append(path)
    return written

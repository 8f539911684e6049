"""Captured gateway traffic as a replay store: the on-disk schema and the loader.

The gateway (server/capture.py) writes served episodes under ``CAPTURE_DIR/<model>/seg<Δ>/``: rotated
``capture-*.parquet`` files (one row per branch of a captured episode) and ``labels-*.jsonl`` files
(one line per ``POST /v1/feedback`` label of a captured completion). Each Parquet file has the replay
store schema (offline/replay_store.py) plus capture columns, so it loads alone with `load_store` (without
golds: labels arrive later). `load_capture(leaf)` merges one leaf directory into one `ReplayStore`:

* rows of every file, grouped into questions by prompt (its text, or its hash when redacted), so a
  question asked in several requests gets all their branches;
* golds joined from the labels by completion id (``gold`` given, or the served answer when the label
  said ``correct: true``; ``correct: false`` gives no gold). Questions without a gold stay in the store
  (their episodes count toward tokens) but not toward accuracy (`EpisodeResult.correct` is None).

A branch the served controller pruned, or that was still running when the episode ended, has no
recorded continuation: it is stored as finishing at its last decoded segment, with its last revealed
answer (``ERR`` if none) as final (``complete`` is False on its row). Segments the served controller
decoded without probing hold ``ERR`` in ``probe_answers`` (``revealed_depths`` lists the real ones).
See docs/capture.md for what this means for evaluation (it is biased toward the served controller).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StoreError
from .replay_store import FORMAT_VERSION, META_KEY, ReplayStore

__all__ = ["CAPTURE_PREFIX", "LABELS_PREFIX", "capture_leaves", "capture_table", "is_capture_leaf",
           "load_capture", "read_labels"]

CAPTURE_PREFIX = "capture-"
LABELS_PREFIX = "labels-"
NO_ANSWER = "ERR"
_STORE_COLUMNS = ("question_id", "question", "gold_answer", "branch", "probe_answers", "branch_tokens",
                  "final_answer")
# capture columns beyond the store schema, with their Arrow types (built lazily: pyarrow is imported on use)
_CAPTURE_COLUMNS = (
    ("completion_id", "string"), ("choice", "int32"), ("seed", "int64"), ("created", "float64"),
    ("controller", "string"), ("spec", "string"), ("controller_version", "string"), ("arm", "string"),
    ("engine", "string"), ("prompt_sha256", "string"), ("answer", "string"), ("fallback", "string"),
    ("temperature", "float64"), ("top_p", "float64"), ("opened", "int32"), ("complete", "bool"),
    ("pruned", "bool"), ("revealed_depths", "list<int32>"),
)


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    if name == "list<int32>":
        return pa.list_(pa.int32())
    return {"bool": pa.bool_(), "string": pa.string()}.get(name) or getattr(pa, name)()


def is_capture_file(path: Path) -> bool:
    return path.name.startswith(CAPTURE_PREFIX) and path.suffix == ".parquet"


def is_capture_leaf(path: Path) -> bool:
    """A directory holding captured episodes directly (one model, one Δ)."""
    return path.is_dir() and any(is_capture_file(p) for p in path.iterdir())


def capture_leaves(files: Iterable[Path]) -> set[Path]:
    """The capture leaf directories among the parents of `files` (e.g. the result of an rglob)."""
    return {p.parent for p in files if is_capture_file(p)}


def capture_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
    """Rows (one per branch; see `_CAPTURE_COLUMNS` and the store columns) as one Arrow table.

    `question_id` numbers the distinct prompts of this file, `branch` the rows of each, so the file
    alone is a valid replay store.
    """
    import pyarrow as pa

    qids: dict[str, int] = {}
    counts: dict[int, int] = {}
    question_id, branch = [], []
    for row in rows:
        q = qids.setdefault(row["prompt_sha256"], len(qids))
        question_id.append(q)
        branch.append(counts.get(q, 0))
        counts[q] = branch[-1] + 1
    columns: dict[str, Any] = {
        "question_id": pa.array(question_id, pa.int32()),
        "question": pa.array([r["question"] for r in rows], pa.string()),
        "gold_answer": pa.array([None] * len(rows), pa.string()),
        "branch": pa.array(branch, pa.int32()),
        "probe_answers": pa.array([r["probe_answers"] for r in rows], pa.list_(pa.string())),
        "branch_tokens": pa.array([r["branch_tokens"] for r in rows], pa.int64()),
        "final_answer": pa.array([r["final_answer"] for r in rows], pa.string()),
    }
    for name, kind in _CAPTURE_COLUMNS:
        columns[name] = pa.array([r.get(name) for r in rows], _arrow_type(kind))
    full = {"format": FORMAT_VERSION, "source": "capture", **meta}
    return pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(full).encode()})


def read_labels(leaf: Path) -> dict[str, dict[str, Any]]:
    """Completion id → its label, from every ``labels-*.jsonl`` of `leaf` (the first label of an id wins)."""
    labels: dict[str, dict[str, Any]] = {}
    for path in sorted(leaf.glob(f"{LABELS_PREFIX}*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    label = json.loads(line)
                    rid = label["completion_id"]
                except (ValueError, KeyError, TypeError):
                    raise StoreError(f"{path}: line {lineno}: not a label (JSON object with completion_id)") \
                        from None
                gold = label.get("gold")
                if gold is not None and not isinstance(gold, str):
                    raise StoreError(f"{path}: line {lineno}: gold must be a string or null, got {gold!r}")
                labels.setdefault(str(rid), label)
    return labels


def _read_file(path: Path) -> tuple[Any, dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{path}: not a readable capture file ({' '.join(str(exc).split())})") from exc
    need = (*_STORE_COLUMNS, "completion_id", "prompt_sha256", "complete")
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise StoreError(f"{path}: missing capture column(s) {', '.join(missing)}")
    try:
        meta = json.loads((table.schema.metadata or {}).get(META_KEY) or b"{}")
    except ValueError as exc:
        raise StoreError(f"{path}: metadata key 'autotts' is not valid JSON") from exc
    seg = meta.get("segment_tokens")
    if not isinstance(seg, int) or seg <= 0:
        raise StoreError(f"{path}: metadata field segment_tokens must be a positive int, got {seg!r}")
    return table, meta


def load_capture(leaf: str | Path) -> ReplayStore:
    """Merge one capture leaf directory (one model, one Δ) into a replay store with golds from labels."""
    leaf = Path(leaf)
    files = sorted(p for p in leaf.iterdir() if is_capture_file(p)) if leaf.is_dir() else []
    if not files:
        raise StoreError(f"{leaf}: no {CAPTURE_PREFIX}*.parquet files (not a capture directory)")
    labels = read_labels(leaf)
    questions: dict[str, dict[str, Any]] = {}  # prompt hash → record, in order of first capture
    models, segs, extractors, aggregators = set(), set(), {}, set()
    completions: set[str] = set()
    truncated = rows_total = 0
    for path in files:
        table, meta = _read_file(path)
        models.add(str(meta.get("model", leaf.parent.name)))
        segs.add(meta["segment_tokens"])
        if meta.get("extractor") is not None:  # files from before extractors were recorded read boxed
            extractors.setdefault(json.dumps(meta["extractor"], sort_keys=True), meta["extractor"])
        aggregators.add(meta.get("aggregator"))  # None: files from before aggregators were recorded
        cols = {name: table.column(name).to_pylist() for name in
                ("question", "prompt_sha256", "completion_id", "probe_answers", "branch_tokens", "final_answer",
                 "complete")}
        for r in range(table.num_rows):
            key, rid = cols["prompt_sha256"][r], cols["completion_id"][r]
            probes, tokens, final = cols["probe_answers"][r], cols["branch_tokens"][r], cols["final_answer"][r]
            if key is None or rid is None or cols["question"][r] is None or probes is None or tokens is None \
                    or final is None or tokens < 0 or any(a is None for a in probes):
                raise StoreError(f"{path}: row {r}: null or negative value in a required column")
            record = questions.setdefault(key, {"question": cols["question"][r], "branches": [], "golds": [],
                                                "completions": []})
            record["branches"].append((probes, int(tokens), final))
            if rid not in record["completions"]:
                record["completions"].append(rid)
            completions.add(rid)
            truncated += not cols["complete"][r]
            rows_total += 1
    if len(models) > 1 or len(segs) > 1:
        raise StoreError(f"{leaf}: capture files disagree on model {sorted(models)} or segment_tokens "
                         f"{sorted(segs)}; one capture directory holds one model and one Δ")
    kinds = {e.get("kind") for e in extractors.values()}
    if len(kinds) > 1:
        raise StoreError(f"{leaf}: capture files disagree on the extractor of their answers ({sorted(kinds)}); "
                         "one capture directory holds answers read one way")
    conflicts = 0
    for record in questions.values():
        golds = [labels[rid]["gold"] for rid in record["completions"]
                 if rid in labels and labels[rid].get("gold") is not None]
        distinct = list(dict.fromkeys(golds))
        conflicts += len(distinct) > 1
        record["gold_answer"] = max(distinct, key=golds.count) if distinct else None  # ties: first labelled
    records = list(questions.values())
    with_gold = sum(r["gold_answer"] is not None for r in records)
    meta = {"source": "capture", "branch_rows": rows_total, "completions": len(completions),
            "labelled": sum(rid in labels for rid in completions), "questions_with_gold": with_gold,
            "truncated_branches": truncated, "gold_conflicts": conflicts,
            "min_branches": min(len(r["branches"]) for r in records),
            "max_branches": max(len(r["branches"]) for r in records),
            **({"extractor": next(iter(extractors.values()))} if extractors else {}),
            # the vote the served episodes used; files that disagree (A/B arms voting differently) leave the
            # choice to whoever evaluates the store: exact strings unless told
            **({"aggregator": next(iter(aggregators))} if len(aggregators) == 1 and None not in aggregators else {})}
    model, seg = models.pop(), segs.pop()
    return ReplayStore.from_records(model, f"capture-seg{seg}", seg, records, meta=meta, path=str(leaf))

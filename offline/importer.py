"""Importer for the public AutoTTS replay format (`.json` or `.json.gz`).

A file is a JSON list of questions, each `{"question", "gold_answer", "probe_freq",
"each_branch": [[probe_answers, branch_tokens, final_answer], ...]}`. Model and dataset come
from the path `<model>/<dataset>.json[.gz]` unless given. Every problem is reported in one line
naming the file, the question index and the field.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from .capture_store import capture_leaves
from .errors import StoreError
from .replay_store import ReplayStore

__all__ = ["find_data_files", "read_public_json", "split_model_dataset"]

JSON_SUFFIXES = (".json", ".json.gz")


def split_model_dataset(path: Path) -> tuple[str, str]:
    """`<model>/<dataset>.json[.gz]` (or `.parquet`) → (model, dataset)."""
    name = path.name
    for suffix in (".json.gz", ".json", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.parent.name or "model", name


def find_data_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and directories into store files (JSON, JSON.gz, Parquet), sorted per argument.

    A gateway capture directory (offline/capture_store.py) yields its leaf directories, one store each.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if p.is_file() and (p.name.endswith(JSON_SUFFIXES) or p.suffix == ".parquet"))
            if not files:
                raise StoreError(f"{path}: directory holds no .json, .json.gz or .parquet store")
            leaves = capture_leaves(files)  # captured traffic: one store per leaf directory, not per file
            found.extend(sorted([p for p in files if p.parent not in leaves] + list(leaves)))
        elif path.is_file():
            found.append(path)
        else:
            raise StoreError(f"{path}: no such file or directory")
    return found


def _load_json(path: Path) -> Any:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return json.load(fh)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         "truncated file?") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise StoreError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _validate_question(path: Path, qi: int, item: Any) -> tuple[dict[str, Any], int]:
    where = f"{path}: question {qi}"
    if not isinstance(item, dict):
        raise StoreError(f"{where}: expected an object, got {type(item).__name__}")
    for key in ("question", "gold_answer", "each_branch"):
        if key not in item:
            raise StoreError(f"{where}: missing field {key!r}")
    if not isinstance(item["question"], str):
        raise StoreError(f"{where}: field 'question' must be a string")
    gold = item["gold_answer"]
    if isinstance(gold, bool) or not isinstance(gold, str | int | float):
        raise StoreError(f"{where}: field 'gold_answer' must be a string or number, got {gold!r}")
    freq = item.get("probe_freq", 500)
    if isinstance(freq, bool) or not isinstance(freq, int) or freq <= 0:
        raise StoreError(f"{where}: field 'probe_freq' must be a positive int, got {freq!r}")
    branches = item["each_branch"]
    if not isinstance(branches, list) or not branches:
        raise StoreError(f"{where}: field 'each_branch' must be a non-empty list")
    rows = []
    for bi, branch in enumerate(branches):
        bwhere = f"{where}: each_branch[{bi}]"
        if not isinstance(branch, list | tuple) or len(branch) != 3:
            raise StoreError(f"{bwhere}: expected [probe_answers, branch_tokens, final_answer]")
        probes, tokens, final = branch
        if not isinstance(probes, list) or not all(isinstance(a, str) for a in probes):
            raise StoreError(f"{bwhere}: probe_answers must be a list of strings")
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise StoreError(f"{bwhere}: branch_tokens must be a non-negative int, got {tokens!r}")
        if not isinstance(final, str):
            raise StoreError(f"{bwhere}: final_answer must be a string, got {final!r}")
        rows.append((probes, tokens, final))
    record = {"question": item["question"], "gold_answer": gold if isinstance(gold, str) else str(gold),
              "branches": rows}
    return record, freq


def read_public_json(path: str | Path, *, model: str | None = None, dataset: str | None = None) -> ReplayStore:
    """Read and validate one public-format file into a `ReplayStore`."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, list) or not data:
        raise StoreError(f"{path}: expected a non-empty JSON list of questions")
    records, freqs = [], set()
    for qi, item in enumerate(data):
        record, freq = _validate_question(path, qi, item)
        records.append(record)
        freqs.add(freq)
    if len(freqs) != 1:
        raise StoreError(f"{path}: questions disagree on probe_freq ({sorted(freqs)}); a store has one Δ")
    guessed_model, guessed_dataset = split_model_dataset(path)
    return ReplayStore.from_records(model or guessed_model, dataset or guessed_dataset, freqs.pop(), records,
                                    meta={"source": path.name}, path=str(path))

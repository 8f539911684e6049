"""The run directory: configuration, candidate code, the evaluation log and LLM spend, all atomic.

Layout of ``RUN_DIR``::

    run.json            the run's configuration (what --resume continues)
    candidates/ID.py    every candidate's source, written before it is evaluated
    history.jsonl       one record per finished evaluation (search stores only)
    rounds.jsonl        one summary per finished round (spend, wall time, best objective)
    usage.jsonl         one line per LLM call (tokens, dollars), written as soon as the call returns
    heldout.json, baselines.json, artifacts/, report.*   written by the loop and the report

Every file is rewritten through a temporary file and a rename after each change, so a run killed
at any instant (even by SIGKILL) leaves each file either before or after the change. On resume,
finished evaluations are found by source hash and never run again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from autotts.controllers.atomic import write_text_atomic

from .errors import RunDirError

__all__ = ["History", "RunDirError", "eligible", "source_key"]


def source_key(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def eligible(record: dict[str, Any]) -> bool:
    """An evaluation that may become an artifact: it ran fine and through the full sweep (not raced out)."""
    return record["status"] == "ok" and record.get("complete", True)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise RunDirError(f"{path}: line {i} is not valid JSON") from None
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | tuple):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


class History:
    """Everything a run has done so far, mirrored to ``RUN_DIR`` after every change."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.records: list[dict[str, Any]] = _read_jsonl(self.root / "history.jsonl")
        self.rounds: list[dict[str, Any]] = _read_jsonl(self.root / "rounds.jsonl")
        self.usage: list[dict[str, Any]] = _read_jsonl(self.root / "usage.jsonl")
        self._by_key = {r["key"]: r for r in self.records}

    # --- configuration ----------------------------------------------------------------------
    @staticmethod
    def create(root: str | Path, config: dict[str, Any], *, resume: bool) -> History:
        root = Path(root)
        config_path = root / "run.json"
        if resume:
            if not config_path.is_file():
                raise RunDirError(f"{root}: nothing to resume (no run.json)")
        elif root.exists() and any(root.iterdir()):
            raise RunDirError(f"{root}: directory exists and is not empty; use --resume to continue that run "
                              "or choose another --out")
        else:
            root.mkdir(parents=True, exist_ok=True)
            write_text_atomic(config_path, json.dumps(config, indent=2, default=_jsonable))
        return History(root)

    def config(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.root / 'run.json'}: cannot read the run configuration ({exc})") from None

    def update_config(self, **changes: Any) -> None:
        config = {**self.config(), **changes}
        write_text_atomic(self.root / "run.json", json.dumps(config, indent=2, default=_jsonable))

    # --- candidates and evaluations ---------------------------------------------------------
    def next_id(self) -> str:
        taken = {r["id"] for r in self.records}
        existing = {p.stem for p in (self.root / "candidates").glob("c*.py")}
        n = len(taken | existing)
        while f"c{n:04d}" in taken | existing:
            n += 1
        return f"c{n:04d}"

    def id_for(self, source: str) -> str:
        """The id of an unfinished earlier attempt at exactly this source (a killed run), else a new id."""
        done = {r["id"] for r in self.records}
        for path in sorted((self.root / "candidates").glob("c*.py")):
            if path.stem not in done and path.read_text(encoding="utf-8") == source:
                return path.stem
        return self.next_id()

    def find(self, source: str) -> dict[str, Any] | None:
        """The finished evaluation of exactly this source, if any."""
        return self._by_key.get(source_key(source))

    def get(self, candidate_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r["id"] == candidate_id), None)

    def source(self, record: dict[str, Any]) -> str:
        return (self.root / record["source_file"]).read_text(encoding="utf-8")

    def write_source(self, candidate_id: str, source: str) -> str:
        rel = f"candidates/{candidate_id}.py"
        write_text_atomic(self.root / rel, source)
        return rel

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append a finished evaluation and persist the whole log atomically."""
        self.records.append(record)
        self._by_key[record["key"]] = record
        _write_jsonl(self.root / "history.jsonl", self.records)
        return record

    def valid(self) -> list[dict[str, Any]]:
        """The records that may become artifacts (`eligible`)."""
        return [r for r in self.records if eligible(r)]

    def best(self, n: int = 1) -> list[dict[str, Any]]:
        """The `n` best eligible records by objective (ties: earlier first)."""
        return sorted(self.valid(), key=lambda r: (-r["objective"], r["id"]))[:n]

    # --- rounds and spend ---------------------------------------------------------------------
    def add_usage(self, entry: dict[str, Any]) -> None:
        self.usage.append(entry)
        _write_jsonl(self.root / "usage.jsonl", self.usage)

    def finish_round(self, summary: dict[str, Any]) -> None:
        self.rounds.append(summary)
        _write_jsonl(self.root / "rounds.jsonl", self.rounds)

    def spend(self, round_no: int | None = None) -> dict[str, float]:
        rows = [u for u in self.usage if round_no is None or u.get("round") == round_no]
        return {"input_tokens": sum(u.get("input_tokens", 0) for u in rows),
                "output_tokens": sum(u.get("output_tokens", 0) for u in rows),
                "usd": round(sum(u.get("usd", 0.0) for u in rows), 6), "calls": len(rows)}

    def write_json(self, name: str, data: Any) -> Path:
        path = self.root / name
        write_text_atomic(path, json.dumps(data, indent=2, default=_jsonable))
        return path

    def read_json(self, name: str) -> Any:
        path = self.root / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise RunDirError(f"{path}: not valid JSON") from None

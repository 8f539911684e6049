"""Opening a replay store from any file it comes in: `load_store`.

A store is a Parquet file (offline/replay_store.py, the in-memory `ReplayStore` and its on-disk form), a
public-format JSON file (`.json` / `.json.gz`, offline/importer.py) or a directory of captured gateway
traffic (offline/capture_store.py). This module sits above the three so that none of them imports another
format's reader.
"""

from __future__ import annotations

from pathlib import Path

from autotts.controllers.aggregators import recorded_aggregator

from .capture_store import load_capture
from .errors import StoreError
from .importer import read_public_json
from .replay_store import QuestionTrajectories, ReplayStore

__all__ = ["QuestionTrajectories", "ReplayStore", "StoreError", "load_store"]


def load_store(path: str | Path, *, model: str | None = None, dataset: str | None = None) -> ReplayStore:
    """Load one store from a Parquet file, a public-format JSON file (`.json` / `.json.gz`) or a capture directory."""
    path = Path(path)
    if path.is_dir():  # a directory of captured gateway traffic (offline/capture_store.py)
        store = load_capture(path)
    elif not path.is_file():
        raise StoreError(f"{path}: no such file")
    elif path.suffix == ".parquet":
        store = ReplayStore.read_parquet(path)
    else:
        return _checked(read_public_json(path, model=model, dataset=dataset))
    store.model, store.dataset = model or store.model, dataset or store.dataset
    return _checked(store)


def _checked(store: ReplayStore) -> ReplayStore:
    """`store`, once the aggregator its metadata records (if any) is one votes can use."""
    try:
        recorded_aggregator(store.meta)
    except ValueError as exc:
        raise StoreError(f"{store.path}: {exc}") from None
    return store

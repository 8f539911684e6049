"""The replay stores loaded in this process, by key: where an evaluation chunk finds its store.

The evaluator registers every store it was given before it starts work (forked local workers inherit
them); a Ray worker, which inherits nothing, registers the copy it fetched from Ray's object store
(offline/ray_backend.py). A key is the store's path (or ``memory:<id>`` for a store built in memory).
"""

from __future__ import annotations

from .replay_store import ReplayStore

__all__ = ["STORES"]

STORES: dict[str, ReplayStore] = {}

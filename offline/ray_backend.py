"""Running evaluation chunks as Ray tasks, for `autotts eval --ray [ADDRESS]`.

The local process pool hands stores to forked workers through offline/loaded_stores.py; Ray workers are
separate processes (possibly on other machines) that inherit nothing, so every store is put in
Ray's object store once and each worker fetches it once, by reference (numpy arrays zero-copy).
Each task then runs the very same chunk function as the local pool, which is why the results are
identical. Ray is imported only here, and only when asked for.

Address: ``""`` starts (or joins) a local Ray instance with `num_cpus` CPUs; ``"auto"`` joins the
cluster this machine belongs to; ``"ray://host:10001"`` connects through Ray Client. autotts (and
any controller artifact named by path) must be importable/readable on the cluster's nodes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import RayUnavailableError
from .loaded_stores import STORES
from .store import ReplayStore

__all__ = ["RayUnavailableError", "ray_session", "run_chunks_on_ray", "without_caches"]

log = logging.getLogger(__name__)

Chunk = tuple[str, str, list[int]]  # (controller spec, store key, seeds)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError("--ray needs Ray: pip install 'autotts[ray]'") from exc
    return ray


@contextmanager
def ray_session(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a `with` block; shut down only what this block started.

    If the calling program already initialised Ray, that session is used as it is and left running.
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"cannot start or reach Ray at {address or 'a local instance'}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


_HELD: dict[str, str] = {}  # in a worker: store key -> id of the object-store copy it holds


def _task(run_chunk: Callable, spec: str, key: str, boxed: list[Any], seeds: list[int], opts: Any):
    """Body of one Ray task: register the store where the chunk function looks (offline/loaded_stores.py), run it.

    The store's reference comes boxed in a list so Ray does not fetch it for every task: a worker
    fetches each store once and keeps it (and the caches the chunk function builds on it) by key.
    """
    import ray

    ref = boxed[0]
    if _HELD.get(key) != ref.hex() or key not in STORES:
        STORES[key] = ray.get(ref)
        _HELD[key] = ref.hex()
    return run_chunk(spec, key, seeds, opts)


def without_caches(store: ReplayStore) -> ReplayStore:
    """The store minus its per-process caches (fields left out of comparison); workers rebuild them."""
    fresh = {f.name: f.default_factory() for f in dataclasses.fields(store)
             if not f.compare and f.default_factory is not dataclasses.MISSING}
    return dataclasses.replace(store, **fresh)


def run_chunks_on_ray(chunks: list[Chunk], stores: dict[str, ReplayStore], opts: Any, run_chunk: Callable,
                      address: str, num_cpus: int | None = None) -> Iterator[tuple[int, Any]]:
    """Run `run_chunk(spec, key, seeds, opts)` for every chunk as a Ray task.

    Yields ``(chunk index, result)`` as tasks finish (any order); Ray is shut down afterwards if
    this call started it, also when the caller stops early or a task fails.
    """
    with ray_session(address, num_cpus) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(_task)
        refs = {key: ray.put(without_caches(store)) for key, store in stores.items()}
        pending = {remote.remote(run_chunk, spec, key, [refs[key]], seeds, opts): i
                   for i, (spec, key, seeds) in enumerate(chunks)}
        log.debug("submitted %d chunks to Ray", len(pending))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:
            for ref in pending:
                ray.cancel(ref)

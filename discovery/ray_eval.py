"""Candidate evaluations as Ray tasks, for `autotts discover --ray [ADDRESS]`.

Each job (`racing.Job`) becomes one Ray task that calls `evaluate_source` on its node, so the
candidate runs behind the same kernel sandbox there as it would here (the node needs bubblewrap and
user namespaces, docs/security.md); the records come back to this process, which writes the history,
so a run on Ray has the same history and results as a local one. Stores travel through Ray's object
store once (numpy arrays zero-copy) and each worker process keeps the ones it fetched, by path.
Address: ``""`` starts a local instance with `slots` CPUs, ``"auto"`` joins this machine's cluster,
``"ray://host:10001"`` connects through Ray Client (the shared `offline.ray_backend.ray_session`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from autotts.offline.ray_backend import ray_session, without_caches
from autotts.offline.store import load_store

from .evaluate import STORES, EvalConfig
from .racing import Job
from .runner import crash_body, evaluate_job

__all__ = ["RayRunner"]

_HELD: dict[str, str] = {}  # in a worker: store path -> id of the object-store copy it holds


def _task(job: Job, config: EvalConfig, boxed: list[Any]) -> dict[str, Any]:
    """Body of one Ray task: make the job's stores available where `evaluate_source` looks, run it."""
    import ray

    for path, ref in zip(job.stores, boxed, strict=True):
        if _HELD.get(path) != ref.hex() or path not in STORES:
            STORES[path] = ray.get(ref)
            _HELD[path] = ref.hex()
    return evaluate_job(job, config)


class RayRunner:
    """Jobs as Ray tasks (one CPU each); `slots` is the cluster's CPU count."""

    def __init__(self, address: str, slots: int) -> None:
        self._session = ray_session(address, num_cpus=slots)
        self.ray = self._session.__enter__()
        self.slots = max(1, int(self.ray.cluster_resources().get("CPU", slots)))
        self._remote = self.ray.remote(num_cpus=1, max_retries=0)(_task)
        self._refs: dict[str, Any] = {}

    def _ref(self, path: str) -> Any:
        if path not in self._refs:
            store = STORES.get(path) or STORES.setdefault(path, load_store(path))
            self._refs[path] = self.ray.put(without_caches(store))
        return self._refs[path]

    def run(self, jobs: list[Job], config: EvalConfig) -> Iterator[tuple[int, dict[str, Any]]]:
        ray = self.ray
        pending = {self._remote.remote(job, config, [self._ref(p) for p in job.stores]): i
                   for i, job in enumerate(jobs)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        yield i, ray.get(ref)
                    except Exception as exc:  # the task itself failed (a node died): a crash, not the run's end
                        yield i, crash_body(exc, jobs[i])
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        self._session.__exit__(None, None, None)

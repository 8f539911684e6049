"""The parent's side of a worker: start it, exchange length-prefixed frames, end its whole process tree.

`Worker.start` launches the worker (jailed where the jail works: jail.py) and returns it ready; the
channel itself, frames over stdin/stdout with a deadline on every wait and a size cap on every reply,
is `_worker.WorkerProcess`. Inside, the bootstrap moves the channel to private descriptors, so worker
code that prints or reads stdin cannot corrupt it. Any failure ends the worker for good (its state is
unknown): start a new one.

    with Worker.start({"autotts.controllers": CONTROLLERS_DIR, "my.worker": WORKER_PY}, "my.worker:main") as w:
        reply = w.request(b'{"op": "ping"}', timeout_s=5)

bwrap's --die-with-parent follows the thread that started the worker (Linux's parent-death signal
is per thread): start workers from a long-lived thread, as `AsyncWorker.start` does (it spawns in
the event-loop thread and runs only the blocking waits in threads).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from ._worker import WorkerProcess
from .jail import launch
from .limits import Limits

__all__ = ["AsyncWorker", "Worker"]


class Worker(WorkerProcess):
    """One sandboxed worker process and its framed channel (sync; not for concurrent use without a lock)."""

    @classmethod
    def start(cls, sources: Mapping[str, str | os.PathLike], entry: str, limits: Limits | None = None, *,
              python: str | None = None, env: Mapping[str, str] | None = None,
              allow_unsandboxed: bool | None = None, seccomp: bool = True, wait: bool = True) -> Worker:
        """Start `entry` ("module:function") with `sources` ({import name: host file or folder}) bound in.

        Waits (``wait=True``) until the entry module imported and the worker said it is ready; raises
        `SandboxUnavailable` where no jail works and unsandboxed workers were not allowed.
        """
        limits = limits or Limits()
        worker = cls(launch(sources, entry, limits, python=python, env=env, allow_unsandboxed=allow_unsandboxed,
                            seccomp=seccomp), limits)
        if wait:
            try:
                worker.wait_ready()
            except BaseException:
                worker.close()
                raise
        return worker


class AsyncWorker:
    """asyncio face of `Worker`: spawns in the event-loop thread, runs each blocking wait in a thread.

    One request at a time per worker (requests queue on the worker's lock). Cancelling an awaiting
    task does not interrupt the exchange: its thread finishes (or times out) and the worker stays usable.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @classmethod
    async def start(cls, sources: Mapping[str, str | os.PathLike], entry: str, limits: Limits | None = None,
                    **options: Any) -> AsyncWorker:
        """Like `Worker.start` (same options)."""
        worker = Worker.start(sources, entry, limits, wait=False, **options)
        try:
            await asyncio.to_thread(worker.wait_ready)
        except BaseException:
            worker.close()
            raise
        return cls(worker)

    async def request(self, payload: bytes, timeout_s: float | None = None) -> bytes:
        return await asyncio.to_thread(self.worker.request, payload, timeout_s)

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.close)

    async def __aenter__(self) -> AsyncWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""Several replicas of one HTTP engine behind one gateway: request affinity, least-loaded choice, health.

A request's engine calls share one long prompt prefix, and vLLM/SGLang cache prefixes per server,
so every call of one request must go to the same replica. `ReplicaPool.lease()` therefore picks a
replica once per request — the healthy one with the fewest requests in flight (ties in turn) — and
returns a `Lease`: a `TokenEngine` pinned to that replica, given back with `Lease.release()` when
the request ends (the gateway does it exactly once, in `Gateway.release`).

A replica whose call fails with `EngineDown` (connection refused or reset, connect timeout: the
server is gone) is taken out: new leases skip it, requests already on it fail (or are retried whole
by the gateway, server/running.py). A background task (started by `start`, stopped by `close`)
re-checks replicas that are out every `health_interval_s` with their `/health` and takes them back
when it answers 200 and the replica still serves the pool's model. With no healthy replica left,
`lease` re-checks at once and otherwise raises `EngineDown` naming every replica and why it is out.

The pool itself is a `TokenEngine` too (tokenize/detokenize go to any healthy replica, failing over
on `EngineDown`), so the gateway's start-up (probe suffix) and pass-through paths need no change. Its
capabilities are what every replica declares (pass-through only when all of them pass through).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .base import Capabilities, GenerateResult, Passthrough, Sampling, StreamChunk, TokenEngine
from .errors import EngineDown, EngineError, ReplicaMismatch

__all__ = ["Lease", "Replica", "ReplicaMismatch", "ReplicaPool"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class Replica:
    """One engine server and what the pool knows about it."""

    engine: TokenEngine
    url: str
    index: int
    healthy: bool = True
    in_flight: int = 0  # leases not yet released
    requests: int = 0  # leases ever given out
    failures: int = 0  # times it was taken out
    reason: str = ""  # why it is out
    next_check: float = 0.0  # monotonic time of the next health check while out
    started: bool = False  # model resolved (engine.start) and checked against the pool's

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "healthy": self.healthy, "in_flight": self.in_flight, "requests": self.requests,
                "failures": self.failures, **({"reason": self.reason} if not self.healthy else {})}


class _TokenCalls:
    """The token calls of `TokenEngine`, each made through `run(call)` on a replica the subclass picks."""

    async def run(self, call: Callable[[TokenEngine], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def tokenize_chat(self, messages: list[dict[str, Any]], **template_kwargs: Any) -> list[int]:
        return await self.run(lambda e: e.tokenize_chat(messages, **template_kwargs))

    async def tokenize_text(self, text: str) -> list[int]:
        return await self.run(lambda e: e.tokenize_text(text))

    async def detokenize(self, token_ids: list[int]) -> str:
        return await self.run(lambda e: e.detokenize(token_ids))

    async def generate(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling,
                       request_id: str) -> GenerateResult:
        return await self.run(lambda e: e.generate(prompt_ids, max_tokens, sampling, request_id))


class ReplicaPool(_TokenCalls):
    """Replicas of one engine (same model) as one `TokenEngine`, with per-request leases."""

    def __init__(self, engines: list[TokenEngine], *, health_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not engines:
            raise ValueError("a replica pool needs at least one engine")
        self.replicas = [Replica(e, e.url or f"replica-{i}", i) for i, e in enumerate(engines)]
        self.name = engines[0].name
        self.model = next((e.model for e in engines if e.model), "")
        self.url: str | None = None  # many places: see `replicas`
        self.capabilities = _common(e.capabilities for e in engines)
        self.health_interval_s = health_interval_s
        self.clock = clock
        self._turn = 0  # round-robin among equally loaded replicas
        self._watcher: asyncio.Task[None] | None = None
        self._checking: dict[Replica, asyncio.Task[bool]] = {}

    # --- lifetime -------------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve every reachable replica's model (they must agree); raise when none is reachable."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="autotts-replica-health")
        pending = [r for r in self.replicas if not r.started]  # one not up yet is out until the watcher sees it
        results = await asyncio.gather(*(self._probe(r, strict=True) for r in pending), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.capabilities = _common(r.engine.capabilities for r in self.replicas)  # as started (block size)
        if not any(r.healthy for r in self.replicas):
            raise self._none_healthy()

    async def _start(self, replica: Replica) -> None:
        engine = replica.engine
        await engine.start()
        if not self.model:
            self.model = engine.model
        elif engine.model != self.model:
            raise ReplicaMismatch(f"engine replicas serve different models: the pool serves {self.model!r}, "
                                  f"{replica.url} serves {engine.model!r}")
        replica.started = True

    async def close(self) -> None:
        tasks = [t for t in (self._watcher, *self._checking.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watcher = None
        for replica in self.replicas:
            await replica.engine.close()

    # --- leases -----------------------------------------------------------------------------
    async def lease(self, exclude: tuple[str, ...] = (), *, request: bool = True) -> Lease:
        """Pin a request to the least-loaded healthy replica (not one of the `exclude` URLs).

        Equally loaded replicas take requests in turn; `request=False` (one tokenize call, not a
        request) takes the first of them and is not counted in the replica's requests.
        """
        candidates = [r for r in self.replicas if r.healthy and r.url not in exclude]
        if not candidates:
            await self._recheck(due_only=False, exclude=exclude)
            candidates = [r for r in self.replicas if r.healthy and r.url not in exclude]
        if not candidates:
            raise self._none_healthy(exclude)
        low = min(r.in_flight for r in candidates)
        tied = [r for r in candidates if r.in_flight == low]
        replica = tied[self._turn % len(tied)] if request else tied[0]
        self._turn += request
        replica.in_flight += 1
        replica.requests += request
        return Lease(self, replica)

    def mark_down(self, replica: Replica, error: BaseException) -> None:
        """Take `replica` out of new leases until a health check passes."""
        if not replica.healthy:
            return
        replica.healthy = False
        replica.failures += 1
        replica.reason = str(error)
        replica.next_check = self.clock() + self.health_interval_s
        log.warning("engine replica %s taken out (%s); re-checked every %g s", replica.url, error,
                    self.health_interval_s)

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in self.replicas]

    def _none_healthy(self, exclude: tuple[str, ...] = ()) -> EngineDown:
        out = "; ".join(f"{r.url}: {r.reason or ('already tried' if r.url in exclude else 'down')}"
                        for r in self.replicas)
        return EngineDown(f"no healthy engine replica ({out})")

    # --- health -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(max(self.health_interval_s / 4, 0.05))
            try:
                await self._recheck(due_only=True)
            except Exception:  # never let the watcher die on one odd replica
                log.exception("replica health check failed")

    async def _recheck(self, *, due_only: bool, exclude: tuple[str, ...] = ()) -> None:
        now = self.clock()
        due = [r for r in self.replicas
               if not r.healthy and r.url not in exclude and (not due_only or now >= r.next_check)]
        if due:
            await asyncio.gather(*(self._check(r) for r in due))

    async def _check(self, replica: Replica) -> bool:
        """One health check of a replica that is out (shared by concurrent callers)."""
        task = self._checking.get(replica)
        if task is None:
            task = self._checking[replica] = asyncio.create_task(self._probe(replica))
            task.add_done_callback(lambda _: self._checking.pop(replica, None))
        return await asyncio.shield(task)

    async def _probe(self, replica: Replica, *, strict: bool = False) -> bool:
        """Health-check `replica` (and resolve its model the first time); take it in or keep it out."""
        reason = ""
        try:
            if await replica.engine.health():
                if not replica.started:
                    await self._start(replica)
            else:
                reason = f"{replica.url}/health failed (unreachable or not 200)"
        except ReplicaMismatch as exc:
            if strict:
                raise
            reason = str(exc)
        except EngineError as exc:
            reason = str(exc)
        if not reason:
            if not replica.healthy:
                replica.healthy, replica.reason = True, ""
                log.warning("engine replica %s is healthy again", replica.url)
            return True
        if replica.healthy:
            self.mark_down(replica, EngineDown(reason))
        else:
            replica.reason, replica.next_check = reason, self.clock() + self.health_interval_s
        return False

    async def health(self) -> bool:
        """True when at least one replica answers its health check (a failing one is taken out)."""
        results = await asyncio.gather(*(self._check(r) if not r.healthy else r.engine.health()
                                         for r in self.replicas))
        for replica, ok in zip(self.replicas, results, strict=True):
            if not ok and replica.healthy:
                self.mark_down(replica, EngineDown(f"{replica.url}/health failed"))
        return any(results)

    # --- the pool as one engine (calls that need no affinity) ---------------------------------
    async def first(self, call: Callable[[TokenEngine], Awaitable[T]], *,
                    request: bool = True) -> tuple[Lease, T]:
        """`call(engine)` on the least-loaded replica, moving on to the next while replicas are down.

        Returns the lease with the result (the caller releases it); any other error releases it.
        """
        tried: tuple[str, ...] = ()
        while True:
            lease = await self.lease(exclude=tried, request=request)
            try:
                return lease, await lease.run(call)
            except EngineDown:
                lease.release()
                tried += (lease.url,)
            except BaseException:
                lease.release()
                raise

    async def run(self, call: Callable[[TokenEngine], Awaitable[T]]) -> T:
        """`call(engine)` on any healthy replica (no affinity: requests should use a `Lease`)."""
        lease, result = await self.first(call, request=False)
        lease.release()
        return result

    async def passthrough(self, path: str, body: dict[str, Any]) -> Any:
        """Controller `none` (``capabilities.passthrough``): the request as is to the least-loaded replica
        (the next one if it is down)."""
        lease, result = await self.first(lambda e: _passing(e).passthrough(path, body))
        lease.release()
        return result

    async def passthrough_stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The first replica that accepts the request streams it; a replica dying mid-stream ends it."""
        lease, stream = await self.first(lambda e: _passing(e).passthrough_stream(path, body))
        return _released(stream, lease)


def _common(declared: Iterable[Capabilities]) -> Capabilities:
    """What every one of `declared` offers (a KV block size only when they all agree on it)."""
    caps = list(declared)
    blocks = {c.kv_block_size for c in caps}
    return Capabilities(passthrough=all(c.passthrough for c in caps), abort_by_id=all(c.abort_by_id for c in caps),
                        kv_block_size=blocks.pop() if len(blocks) == 1 else None,
                        token_stream=all(c.token_stream for c in caps))


def _passing(engine: TokenEngine) -> Passthrough:
    if not engine.capabilities.passthrough:
        raise EngineError(f"engine {engine.name} at {engine.url} does not pass OpenAI requests through")
    return engine  # type: ignore[return-value]  # declared by its capabilities


async def _released(stream: AsyncIterator[bytes], lease: Lease) -> AsyncIterator[bytes]:
    """`stream`, then the lease back. A replica gone after the first byte is taken out and the stream
    raises `EngineDown` naming it (the gateway ends the client's stream with an OpenAI error event)."""
    try:
        async for chunk in stream:
            yield chunk
    except EngineDown as exc:
        lease.pool.mark_down(lease.replica, exc)
        raise EngineDown(f"engine replica {lease.url} went away mid-stream: {exc}", replica=lease.url) from exc
    finally:
        lease.release()


@dataclass(eq=False)
class Lease(_TokenCalls):
    """A `TokenEngine` pinned to one replica for one request; `release()` once it is done."""

    pool: ReplicaPool
    replica: Replica
    released: bool = field(default=False)

    @property
    def name(self) -> str:
        return self.replica.engine.name

    @property
    def model(self) -> str:
        return self.pool.model

    @property
    def url(self) -> str:
        return self.replica.url

    @property
    def capabilities(self) -> Capabilities:
        return self.pool.capabilities

    async def start(self) -> None:
        """Nothing to start: the pool started the replica before leasing it."""

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.replica.in_flight -= 1

    async def run(self, call: Callable[[TokenEngine], Awaitable[T]]) -> T:
        """`call(engine)` on the pinned replica; `EngineDown` takes the replica out and names it."""
        try:
            return await call(self.replica.engine)
        except EngineDown as exc:
            self.pool.mark_down(self.replica, exc)
            if exc.replica == self.replica.url:
                raise
            raise EngineDown(str(exc), replica=self.replica.url) from exc

    async def stream(self, prompt_ids: list[int], max_tokens: int, sampling: Sampling, request_id: str,
                     chunk_tokens: int = 1) -> AsyncIterator[StreamChunk]:
        """A streamed call on the pinned replica (``capabilities.token_stream``); `EngineDown` takes it out."""
        inner = self.replica.engine.stream(prompt_ids, max_tokens, sampling, request_id,  # type: ignore[attr-defined]
                                           chunk_tokens)
        try:
            async for chunk in inner:
                yield chunk
        except EngineDown as exc:
            self.pool.mark_down(self.replica, exc)
            raise EngineDown(str(exc), replica=self.replica.url) from exc
        finally:
            await inner.aclose()

    async def health(self) -> bool:
        return await self.replica.engine.health()

    async def close(self) -> None:
        self.release()

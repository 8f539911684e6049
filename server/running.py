"""Running a job: its episodes, a retry on another replica, and the plain fallback.

`run_job` runs the job's episodes through the executor (concurrently when n > 1). When the job's engine
replica goes down under it, the whole job runs again, once, on another healthy replica (`_retry`). A
controller that fails, or ends without an answer, is replaced by one plain completion on a fresh backend
when the gateway is configured with ``fallback: plain`` (`_fallback`, counted in
``autotts_fallbacks_total``). Whatever happens, the concurrency slot is freed and the outcome accounted
(server/accounting.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from autotts.controllers.errors import AutoTTSError
from autotts.engines.backends import BranchBackend
from autotts.engines.errors import EngineDown, EngineError
from autotts.engines.pool import ReplicaPool

from .accounting import record_job
from .errors import ControllerFailed, http_error
from .executor import Caps, EpisodeOutcome, run_episode
from .jobs import PLAIN, Job
from .reply import compose

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["run_job"]

log = logging.getLogger(__name__)


async def run_job(gateway: Gateway, job: Job, progress=None) -> list[EpisodeOutcome]:
    """Run the job's episodes (concurrently when n > 1); records metrics, frees the slot."""
    status = "500"
    outcomes: list[EpisodeOutcome | None] = [None] * len(job.backends)
    config = gateway.config
    try:
        async def one(i: int, backend: BranchBackend) -> None:
            report = None if progress is None else (
                lambda snap, i=i: progress(i, {**snap, "retries": job.retries} if job.retries else snap))
            qid = job.source.get("question", 0)
            try:
                outcomes[i] = await run_episode(job.controller, backend, question_id=qid, question=job.question,
                                                caps=job.caps, progress=report, aggregator=job.aggregator,
                                                settle=gateway.voter.settle)
            except ControllerFailed:
                if config.fallback != "plain" or job.fresh_backend is None:
                    raise
                log.warning("request %s: controller %s failed; answering with one plain completion",
                            job.rid, job.controller.spec, exc_info=True)
                reason = "controller_error"
            else:
                o = outcomes[i]
                if o.answer is not None or config.fallback != "plain" or job.fresh_backend is None:
                    await compose(job.reply, backend, o)
                    return
                reason = "budget" if o.budget_exhausted else "no_answer"
            fallback = await _fallback(gateway, job, i, reason, report)
            outcomes[i] = await compose(job.reply, job.backends[i], fallback)

        while True:
            try:
                if len(job.backends) == 1:
                    await one(0, job.backends[0])
                else:
                    try:
                        async with asyncio.TaskGroup() as group:
                            for i, backend in enumerate(job.backends):
                                group.create_task(one(i, backend))
                    except BaseExceptionGroup as errors:
                        raise next((e for e in errors.exceptions if isinstance(e, AutoTTSError)),
                                   errors.exceptions[0]) from None
                break
            except EngineDown as exc:
                if not await _retry(gateway, job, exc):
                    raise
                outcomes = [None] * len(job.backends)
        status = "200"
    except AutoTTSError as exc:  # counted here with the job's labels; the route replies without counting again
        status = str(http_error(exc).status)
        if isinstance(exc, EngineError):
            gateway.metrics.engine_errors.labels(engine=config.engine, kind=exc.kind).inc()
        raise
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    finally:
        gateway.release(job)
        record_job(gateway, job, status, [o for o in outcomes if o is not None])
    return outcomes  # type: ignore[return-value]


async def _retry(gateway: Gateway, job: Job, exc: EngineDown) -> bool:
    """Move the job whole to another healthy replica when its own went down (once per request).

    Safe at any point of `run_job`: a streaming response sends only progress chunks before the
    episode ends, never answer text. The failed attempt's tokens still count in the metrics.
    """
    lease, pool = job.lease, gateway.engine
    if (lease is None or job.rebuild is None or job.retries >= 1 or job.released
            or not isinstance(pool, ReplicaPool) or exc.replica != lease.url):
        return False
    caps = job.caps
    if caps.timeout_s is not None:
        left = caps.timeout_s - (time.perf_counter() - job.started)
        if left <= 0:
            return False
        caps = replace(caps, timeout_s=left)
    try:
        new = await pool.lease(exclude=(lease.url,))
    except EngineDown:
        return False  # nowhere to go: the request fails with the replica's own error
    log.warning("request %s: engine replica %s failed (%s); running it again on %s", job.rid, lease.url, exc,
                new.url)
    gateway.metrics.engine_retries.labels(replica=lease.url).inc()
    lease.release()
    job.lease, job.caps, job.retries = new, caps, job.retries + 1
    job.discarded.extend(job.backends)
    job.backends = job.rebuild()
    job.fallbacks.clear()
    job.source.update(replica=new.url, retried_from=lease.url)
    return True


async def _fallback(gateway: Gateway, job: Job, i: int, reason: str, report) -> EpisodeOutcome:
    """Choice `i` again as one plain completion (a single full-length branch) on a fresh backend."""
    assert job.fresh_backend is not None
    job.discarded.append(job.backends[i])
    job.backends[i] = backend = job.fresh_backend(i)
    job.fallbacks[i] = reason
    gateway.metrics.fallbacks.labels(**job.labels, reason=reason).inc()
    caps = Caps(max_branches=1, token_budget=gateway.config.max_total_tokens, budget_visible=False,
                timeout_s=job.caps.timeout_s, controller_in_thread=False)
    return await run_episode(PLAIN, backend, question_id=job.source.get("question", 0),
                             question=job.question, caps=caps, progress=report)

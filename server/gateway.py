"""The gateway's serving logic between the HTTP routes and the executor.

`Gateway` holds what lives as long as the app (engine or replica pool, replay catalog, the loaded
controllers, metrics, the concurrency counter, traffic capture). Per request, `prepare` validates caps,
picks the controller, resolves the model, leases an engine replica and builds one branch backend per
choice (`n`); `run` executes the episodes (moving the request whole to another replica if its own goes
down) and records metrics; server/summary.py turns outcomes into the response. A/B arms are picked by
the selector (server/arms.py); finished completions are remembered for ``POST /v1/feedback``
(server/feedback.py); a controller that fails, or ends without an answer, falls back to one plain
completion when ``fallback: plain`` (counted in ``autotts_fallbacks_total``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from autotts.controllers.base import Controller
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.errors import AutoTTSError
from autotts.controllers.registry import load
from autotts.engines.backends import BranchBackend, TokenBranchBackend
from autotts.engines.base import Sampling, TokenEngine
from autotts.engines.errors import EngineDown, EngineError
from autotts.engines.factory import make_engine
from autotts.engines.pool import Lease, ReplicaPool

from .capture import TrafficCapture
from .config import GatewayConfig
from .errors import BadRequest, ControllerFailed, ModelNotFound, TooManyRequests, http_error
from .executor import Caps, EpisodeOutcome, run_episode
from .feedback import CompletionRecord, FeedbackStore
from .lifecycle import ControllerLifecycle
from .metrics import GatewayMetrics
from .protocol import ChatCompletionRequest, CompletionRequest, new_id
from .replay import ReplayBranchBackend, ReplayCatalog, bundled_stores, estimate_tokens
from .selection import ControllerSelector, Selection

__all__ = ["Gateway", "Job"]

log = logging.getLogger(__name__)

_BUILTIN_TYPES = frozenset(BUILTINS.values())


@dataclass
class Job:
    """One request, ready to run: `n` backends, one controller, the caps."""

    kind: str  # chat | completion
    rid: str
    model: str  # model name echoed in the response
    selection: Selection
    controller: Controller
    backends: list[BranchBackend]
    seeds: list[int]
    question: str
    caps: Caps
    include_usage: bool = False
    progress: bool = True
    source: dict[str, Any] = field(default_factory=dict)  # replay: store and question index
    started: float = field(default_factory=time.perf_counter)
    released: bool = False
    fresh_backend: Callable[[int], BranchBackend] | None = None  # a new backend for choice i (fallback)
    discarded: list[BranchBackend] = field(default_factory=list)  # failed attempts (still counted in metrics)
    fallbacks: dict[int, str] = field(default_factory=dict)  # choice → reason it fell back
    lease: Lease | None = None  # engine replicas: the one replica every call of this request goes to
    rebuild: Callable[[], list[BranchBackend]] | None = None  # new backends on `lease` (retry on another replica)
    retries: int = 0

    @property
    def labels(self) -> dict[str, str]:
        return {"controller": self.selection.name, "controller_version": self.selection.version,
                "arm": self.selection.arm, "model": self.model}


class Gateway:
    def __init__(self, config: GatewayConfig, *, engine: TokenEngine | None = None,
                 catalog: ReplayCatalog | None = None) -> None:
        self.config = config
        self.engine = engine
        self.catalog = catalog
        self.metrics = GatewayMetrics()
        # what controllers are loaded; `reload()` swaps the set, running jobs keep theirs (server/lifecycle.py)
        self.controllers = ControllerLifecycle(config, self.metrics)
        self.feedback = FeedbackStore(config.feedback_capacity, config.feedback_mode)
        self.capture = TrafficCapture.from_config(config, self.metrics)  # None unless capture is on
        self.in_flight = 0
        self.suffix_ids: list[int] = []
        self._single = load("sc:n=1")  # controller `none` on engines without pass-through: one sample
        self._ready = False
        self._ready_lock = asyncio.Lock()

    # --- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        if self.capture is not None:
            self.capture.start()
        if cfg.engine == "replay" and self.catalog is None:
            paths = cfg.stores or [str(p) for p in bundled_stores()]
            self.catalog = await asyncio.to_thread(ReplayCatalog.from_paths, paths, cfg.model)
        elif self.engine is None:
            self.engine = make_engine(cfg)
        if isinstance(self.engine, ReplicaPool):
            self.metrics.watch_replicas(self.engine.status)
        if cfg.engine == "vllm-inproc" and self.engine is not None:
            await self._engine_ready()  # starts the engine in this process
        elif self.engine is not None:
            try:  # an engine that is not up yet is not fatal: the first request retries (and 502s)
                await self._engine_ready()
            except EngineError as exc:
                log.warning("engine not ready at start-up (%s); will retry on the first request", exc)

    async def _engine_ready(self) -> None:
        """Start/connect the engine and tokenize the probe suffix, once."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready or self.engine is None:
                return
            await self.engine.start()
            suffix = self.config.probe_suffix
            self.suffix_ids = await self.engine.tokenize_text(suffix) if suffix else []
            self._ready = True

    async def close(self) -> None:
        if self.capture is not None:  # write what is buffered before the engine goes
            await asyncio.to_thread(self.capture.close)
        if self.engine is not None:
            await self.engine.close()

    @property
    def passthrough(self) -> bool:
        return self.engine is not None and self.engine.capabilities.passthrough

    @property
    def selector(self) -> ControllerSelector:
        """The controller set serving new requests (replaced by a reload)."""
        return self.controllers.selector

    def model_ids(self) -> list[str]:
        if self.catalog is not None:
            names = sorted(self.catalog.index)
        else:
            names = [self.config.public_model or (self.engine.model if self.engine else "") or "model"]
        return names + sorted(self.selector.aliases)

    # --- per request -----------------------------------------------------------------------
    async def prepare(self, kind: str, body: ChatCompletionRequest | CompletionRequest,
                      header: str | None, *, arm_header: str | None = None,
                      user_header: str | None = None) -> tuple[Selection, Job | None]:
        """Validate and build the job; (selection, None) means pass the request through unchanged."""
        cfg, tts = self.config, body.tts
        rid = new_id("chatcmpl" if kind == "chat" else "cmpl")
        selection = self.selector.select(tts.model_dump(exclude_none=True) if tts else None, header, body.model,
                                         arm_header=arm_header, user_key=body.user or user_header or rid)
        _cap("n", body.n, cfg.max_n)
        _cap("max_tokens", body.branch_tokens, cfg.max_tokens)
        if tts is not None:
            _cap("tts.max_total_tokens", tts.max_total_tokens, cfg.max_total_tokens)
            _cap("tts.max_branches", tts.max_branches, cfg.max_branches)
            _cap("tts.segment_tokens", tts.segment_tokens, cfg.max_tokens)
        if self.engine is not None:
            await self._engine_ready()
        if selection.controller is None and self.passthrough:
            return selection, None
        controller = selection.controller or self._single
        caps = Caps(max_branches=(tts and tts.max_branches) or cfg.max_branches,
                    token_budget=(tts and tts.max_total_tokens) or cfg.max_total_tokens,
                    budget_visible=bool(tts and tts.max_total_tokens),
                    timeout_s=cfg.request_timeout_s,
                    # built-ins take microseconds per step: a thread hop would cost more than it saves
                    controller_in_thread=cfg.controller_in_thread and type(controller) not in _BUILTIN_TYPES)
        question = body.question()
        if self.catalog is not None:
            job = self._replay_job(kind, rid, body, selection, controller, caps, question)
        else:
            job = await self._live_job(kind, rid, body, selection, controller, caps, question)
        job.include_usage, job.progress = body.include_usage, tts.progress if tts else True
        if self.in_flight >= cfg.max_concurrent:
            self.release_lease(job)
            raise TooManyRequests(f"{self.in_flight} episodes are running (max_concurrent={cfg.max_concurrent}); "
                                  "retry later")
        self.in_flight += 1  # reserved until `release(job)` (run() and the route's done-callback both call it)
        self.metrics.in_flight.set(self.in_flight)
        return selection, job

    def release(self, job: Job) -> None:
        """Free the job's concurrency slot (idempotent)."""
        if not job.released:
            job.released = True
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            self.release_lease(job)

    @staticmethod
    def release_lease(job: Job) -> None:
        """Give the job's engine replica back to the pool (idempotent; a no-op with one engine)."""
        if job.lease is not None:
            job.lease.release()

    def _replay_job(self, kind, rid, body, selection, controller, caps, question) -> Job:
        catalog = self.catalog
        assert catalog is not None
        model = catalog.resolve_model(selection.model)
        store, qi = catalog.find(model, question)
        seed = body.seed if body.seed is not None else 0
        seeds = [seed + i for i in range(body.n)]
        prompt = estimate_tokens(question)

        def backend(i: int) -> BranchBackend:
            return ReplayBranchBackend(store, qi, seeds[i], prompt_tokens=prompt, kappa_probe=self.config.kappa_probe,
                                       max_branches=caps.max_branches)

        return Job(kind, rid, model, selection, controller, [backend(i) for i in range(len(seeds))], seeds,
                   question, caps, source={"store": store.name, "question": qi}, fresh_backend=backend)

    async def _live_job(self, kind, rid, body, selection, controller, caps, question) -> Job:
        cfg, engine = self.config, self.engine
        assert engine is not None
        public = cfg.public_model or engine.model
        if selection.model and selection.model not in (public, engine.model):
            raise ModelNotFound(f"model {selection.model!r} is not served here; use {public!r} or an alias "
                                f"({', '.join(sorted(self.selector.aliases))})", param="model")
        lease, prompt_ids = await self._tokenized(kind, body)
        seed = body.seed if body.seed is not None else random.randrange(2**31)
        seeds = [seed + 7_777 * i for i in range(body.n)]
        tts = body.tts
        extra = body.model_extra or {}
        sampling = Sampling(temperature=body.temperature if body.temperature is not None else cfg.temperature,
                            top_p=body.top_p if body.top_p is not None else cfg.top_p,
                            ignore_eos=bool(extra.get("ignore_eos", cfg.ignore_eos)))

        def backend(i: int, retry: str = "") -> BranchBackend:
            return TokenBranchBackend(
                job.lease or engine, prompt_ids, segment_tokens=(tts and tts.segment_tokens) or cfg.segment_tokens,
                probe_suffix_ids=self.suffix_ids, probe_max_tokens=cfg.probe_max_tokens,
                max_branch_tokens=body.branch_tokens or cfg.default_max_tokens, sampling=sampling, seed=seeds[i],
                request_id=f"{rid}-{i}{retry}", max_branches=caps.max_branches, token_budget=caps.token_budget)

        source: dict[str, Any] = {"prompt_length": len(prompt_ids), **({"replica": lease.url} if lease else {})}
        job = Job(kind, rid, public, selection, controller, [], seeds, question, caps, source=source,
                  fresh_backend=lambda i: backend(i, "-fallback"), lease=lease,
                  rebuild=lambda: [backend(i, f"-retry{job.retries}") for i in range(len(seeds))])
        try:
            job.backends = [backend(i) for i in range(len(seeds))]
        except BaseException:
            self.release_lease(job)
            raise
        return job

    async def _tokenized(self, kind, body) -> tuple[Lease | None, list[int]]:
        """The prompt's IDs, tokenized on the replica leased for this request (engine pools) or the engine.

        A replica found down while tokenizing (nothing ran yet) is taken out and the next one leased.
        """
        if not isinstance(self.engine, ReplicaPool):
            return None, await self._prompt_ids(kind, body, self.engine)
        # raises EngineDown (502) once no replica is left
        return await self.engine.first(lambda engine: self._prompt_ids(kind, body, engine))

    async def _prompt_ids(self, kind, body, engine) -> list[int]:
        if kind == "chat":
            extra = dict(self.config.chat_template_kwargs)
            extra.update((body.model_extra or {}).get("chat_template_kwargs") or {})
            return await engine.tokenize_chat(body.plain_messages(), **extra)
        if isinstance(body.prompt, list) and body.prompt and all(type(t) is int for t in body.prompt):
            return list(body.prompt)
        if isinstance(body.prompt, str):
            return await engine.tokenize_text(body.prompt)
        raise BadRequest("prompt must be one string or a list of token ids", param="prompt")

    async def run(self, job: Job, progress=None) -> list[EpisodeOutcome]:
        """Run the job's episodes (concurrently when n > 1); records metrics, frees the slot."""
        status = "500"
        outcomes: list[EpisodeOutcome | None] = [None] * len(job.backends)
        try:
            async def one(i: int, backend: BranchBackend) -> None:
                report = None if progress is None else (
                    lambda snap, i=i: progress(i, {**snap, "retries": job.retries} if job.retries else snap))
                qid = job.source.get("question", 0)
                try:
                    outcomes[i] = await run_episode(job.controller, backend, question_id=qid,
                                                    question=job.question, caps=job.caps, progress=report)
                except ControllerFailed:
                    if self.config.fallback != "plain" or job.fresh_backend is None:
                        raise
                    log.warning("request %s: controller %s failed; answering with one plain completion",
                                job.rid, job.controller.spec, exc_info=True)
                    reason = "controller_error"
                else:
                    o = outcomes[i]
                    if o.answer is not None or self.config.fallback != "plain" or job.fresh_backend is None:
                        return
                    reason = "budget" if o.budget_exhausted else "no_answer"
                outcomes[i] = await self._fallback(job, i, reason, report)

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
                    if not await self._retry(job, exc):
                        raise
                    outcomes = [None] * len(job.backends)
            status = "200"
        except AutoTTSError as exc:  # counted here with the job's labels; the route replies without counting again
            status = str(http_error(exc).status)
            if isinstance(exc, EngineError):
                self.metrics.engine_errors.labels(engine=self.config.engine, kind=exc.kind).inc()
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            self.release(job)
            self._record(job, status, [o for o in outcomes if o is not None])
        return outcomes  # type: ignore[return-value]

    async def _retry(self, job: Job, exc: EngineDown) -> bool:
        """Move the job whole to another healthy replica when its own went down (once per request).

        Safe at any point of `run`: a streaming response sends only progress chunks before the
        episode ends, never answer text. The failed attempt's tokens still count in the metrics.
        """
        lease, pool = job.lease, self.engine
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
        self.metrics.engine_retries.labels(replica=lease.url).inc()
        lease.release()
        job.lease, job.caps, job.retries = new, caps, job.retries + 1
        job.discarded.extend(job.backends)
        job.backends = job.rebuild()
        job.fallbacks.clear()
        job.source.update(replica=new.url, retried_from=lease.url)
        return True

    async def _fallback(self, job: Job, i: int, reason: str, report) -> EpisodeOutcome:
        """Choice `i` again as one plain completion (a single full-length branch) on a fresh backend."""
        assert job.fresh_backend is not None
        job.discarded.append(job.backends[i])
        job.backends[i] = backend = job.fresh_backend(i)
        job.fallbacks[i] = reason
        self.metrics.fallbacks.labels(**job.labels, reason=reason).inc()
        caps = Caps(max_branches=1, token_budget=self.config.max_total_tokens, budget_visible=False,
                    timeout_s=job.caps.timeout_s, controller_in_thread=False)
        return await run_episode(self._single, backend, question_id=job.source.get("question", 0),
                                 question=job.question, caps=caps, progress=report)

    def _record(self, job: Job, status: str, outcomes: list[EpisodeOutcome]) -> None:
        labels = job.labels
        ledgers = [b.ledger for b in [*job.backends, *job.discarded]]
        self.metrics.episode(
            labels, prompt=sum(x.prompt_tokens for x in ledgers), decode=sum(x.decode_tokens for x in ledgers),
            probe=sum(x.probe_tokens for x in ledgers), cached=sum(x.cached_tokens for x in ledgers),
            decode_calls=sum(x.decode_calls for x in ledgers), probe_calls=sum(x.probe_calls for x in ledgers),
            branches=sum(len(o.obs.branches) for o in outcomes), prunes=sum(o.prunes for o in outcomes),
            probes=sum(o.probes for o in outcomes), rounds=sum(o.rounds for o in outcomes))
        self.metrics.request(labels, status, time.perf_counter() - job.started)
        if status == "200" and outcomes:
            self.feedback.add(job.rid, CompletionRecord(labels, job.controller.spec if job.selection.controller
                                                        else "none", outcomes[0].answer))
            if self.capture is not None:
                self.capture.submit(job, outcomes)  # never raises; rows are written off the event loop

    def record_error(self, status: int) -> None:
        """Count a request that failed before it became a job (bad input, unknown model, ...)."""
        labels = {"controller": "-", "controller_version": "-", "arm": "-", "model": "-"}
        self.metrics.requests.labels(**labels, status=str(status)).inc()


def _cap(param: str, value: int | None, cap: int) -> None:
    if value is not None and value > cap:
        raise BadRequest(f"{param}={value} is above this gateway's cap of {cap}", param=param)

"""The gateway's state: what lives as long as the app, and the three jobs of a request over it.

`Gateway` holds the engine (or replica pool) or the replay catalog, the loaded controllers
(server/lifecycle.py), metrics, the feedback store, traffic capture and the concurrency counter. A request
is built into a `Job` (server/jobs.py), run with retry and fallback (server/running.py) and accounted
(server/accounting.py); server/serving.py turns it into the HTTP response. `prepare` reserves a
concurrency slot that `release` frees exactly once, whichever of the run and the route gets there first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from autotts.engines.answers import split_tokens
from autotts.engines.backends import Splitter
from autotts.engines.base import TokenEngine, block_misfit
from autotts.engines.errors import EngineError
from autotts.engines.factory import make_engine
from autotts.engines.pool import ReplicaPool

from .accounting import record_error
from .capture import TrafficCapture
from .config import ConfigError, GatewayConfig
from .errors import TooManyRequests
from .executor import EpisodeOutcome
from .feedback import FeedbackStore
from .jobs import Job, build_job
from .lifecycle import ControllerLifecycle
from .metrics import GatewayMetrics
from .protocol import ChatCompletionRequest, CompletionRequest
from .replay import ReplayCatalog, bundled_stores
from .running import run_job
from .selection import ControllerSelector, Selection
from .voting import Voter

__all__ = ["Gateway", "Job"]

log = logging.getLogger(__name__)
THINK = ("<think>", "</think>")  # the thinking block's tags (Qwen3, DeepSeek-R1 and the tiny test model)


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
        self.voter = Voter(config.embeddings_url, config.embeddings_model, judge_max_tokens=config.judge_max_tokens,
                           timeout_s=config.engine_timeout_s)
        self._suffixes: dict[str, list[int]] = {}  # probe suffix → its token IDs
        self.think_ids: tuple[list[int], list[int]] = ([], [])  # the IDs of <think> and </think>
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._segments_checked: set[int] = set()

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
        if self.engine is not None and cfg.branch_mode == "stream" and not self.engine.capabilities.token_stream:
            raise ConfigError(f"branch_mode: 'stream' needs an engine that streams token IDs; engine "
                              f"{cfg.engine!r} does not (use branch_mode: segments)")
        if isinstance(self.engine, ReplicaPool):
            self.metrics.watch_replicas(self.engine.status)
        if cfg.engine == "vllm-inproc" and self.engine is not None:
            await self.engine_ready()  # starts the engine in this process
        elif self.engine is not None:
            try:  # an engine that is not up yet is not fatal: the first request retries (and 502s)
                await self.engine_ready()
            except EngineError as exc:
                log.warning("engine not ready at start-up (%s); will retry on the first request", exc)

    async def engine_ready(self) -> None:
        """Start/connect the engine and tokenize the probe suffix, once."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready or self.engine is None:
                return
            await self.engine.start()
            self.think_ids = (await self.engine.tokenize_text(THINK[0]), await self.engine.tokenize_text(THINK[1]))
            self._ready = True
            self.check_segments(self.config.segment_tokens)

    def check_segments(self, segment_tokens: int) -> None:
        """Warn (once per Δ) when Δ is not a multiple of the engine's KV block size."""
        if self.engine is None or segment_tokens in self._segments_checked:
            return
        self._segments_checked.add(segment_tokens)
        misfit = block_misfit(segment_tokens, self.engine.capabilities.kv_block_size)
        if misfit:
            log.warning("%s", misfit)

    async def suffix_ids_for(self, suffix: str) -> list[int]:
        """The token IDs of a probe suffix, tokenized once per gateway."""
        if suffix not in self._suffixes:
            self._suffixes[suffix] = await self.engine.tokenize_text(suffix) if suffix else []  # type: ignore[union-attr]
        return self._suffixes[suffix]

    def splitter(self, prompt_ids: list[int]) -> Splitter:
        """How a chat branch splits into thinking and content: at ``</think>``; a prompt whose template closed
        the thinking block already (``enable_thinking: false``) has content only."""
        start, end = self.think_ids
        tail = prompt_ids[-(len(end) + 4):] if end else []
        thinking = not any(tail[i:i + len(end)] == end for i in range(len(tail) - len(end) + 1))
        return lambda ids: split_tokens(ids, end, thinking=thinking, start=start)

    async def close(self) -> None:
        if self.capture is not None:  # write what is buffered before the engine goes
            await asyncio.to_thread(self.capture.close)
        if self.engine is not None:
            await self.engine.close()
        await self.voter.close()

    # --- what it serves ----------------------------------------------------------------------
    @property
    def passthrough(self) -> bool:
        """Controller `none` goes to the engine unchanged (the engine declares it can)."""
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

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(engine healthy, the body of ``GET /health``); several replicas: each one's state."""
        ok = self.engine is None or await self.engine.health()
        pool = self.engine if isinstance(self.engine, ReplicaPool) else None
        return ok, {"status": "ok" if ok else "engine unavailable", "engine": self.config.engine,
                    "in_flight": self.in_flight, **({"replicas": pool.status()} if pool else {})}

    # --- per request -----------------------------------------------------------------------
    async def prepare(self, kind: str, body: ChatCompletionRequest | CompletionRequest,
                      header: str | None, *, arm_header: str | None = None,
                      user_header: str | None = None) -> tuple[Selection, Job | None]:
        """Validate and build the job and reserve its slot; (selection, None): pass the request through."""
        selection, job = await build_job(self, kind, body, header, arm_header=arm_header, user_header=user_header)
        if job is None:
            return selection, None
        cfg = self.config
        if self.in_flight >= cfg.max_concurrent:
            job.release_lease()
            raise TooManyRequests(f"{self.in_flight} episodes are running (max_concurrent={cfg.max_concurrent}); "
                                  "retry later")
        self.in_flight += 1  # reserved until `release(job)` (run() and the route's done-callback both call it)
        self.metrics.in_flight.set(self.in_flight)
        return selection, job

    async def run(self, job: Job, progress=None) -> list[EpisodeOutcome]:
        """Run the job's episodes (server/running.py); records metrics, frees the slot."""
        return await run_job(self, job, progress)

    def release(self, job: Job) -> None:
        """Free the job's concurrency slot and its engine replica (idempotent)."""
        if not job.released:
            job.released = True
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)
            job.release_lease()

    def record_error(self, status: int) -> None:
        """Count a request that failed before it became a job (bad input, unknown model, ...)."""
        record_error(self.metrics, status)

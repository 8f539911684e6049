"""Building a job: one request checked against the caps, given its controller, tokenized, and its backends made.

`build_job` checks the request's sizes against the gateway's caps, asks the selector (server/selection.py)
for the controller (A/B arms: server/arms.py), resolves the model and makes one branch backend per choice
(`n`): a `ReplayBranchBackend` on the replay store holding the question, or a `TokenBranchBackend` on the
engine. On an engine pool the request's prompt is tokenized on the replica leased for it (the next one if
that one is down), and every later call of the job goes to that replica. Running the job:
server/running.py; what it leaves behind: server/accounting.py.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from autotts.controllers.aggregators import Aggregator
from autotts.controllers.base import Controller
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.extractors import THINK_CLOSE
from autotts.controllers.registry import load
from autotts.engines.backends import BranchBackend, TokenBranchBackend
from autotts.engines.base import Sampling, TokenEngine
from autotts.engines.pool import Lease, ReplicaPool
from autotts.engines.streams import StreamBranchBackend

from .errors import BadRequest, ModelNotFound
from .executor import Caps
from .protocol import ChatCompletionRequest, CompletionRequest, new_id
from .replay import ReplayBranchBackend, estimate_tokens
from .reply import ReplyPlan
from .request_kind import passthrough_reason, vote_settings
from .selection import Selection

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["PLAIN", "Job", "build_job"]

#: controller `none` on an engine without pass-through, and the `fallback: plain` answer: one plain sample
PLAIN = load("sc:n=1")
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
    aggregator: Aggregator = field(default_factory=Aggregator)  # how the episodes vote
    reply: ReplyPlan = field(default_factory=ReplyPlan)  # what the response says (server/reply.py)
    return_token_ids: bool = False  # vLLM's field: each choice also carries its branch's token IDs

    @property
    def labels(self) -> dict[str, str]:
        return {"controller": self.selection.name, "controller_version": self.selection.version,
                "arm": self.selection.arm, "model": self.model}

    def release_lease(self) -> None:
        """Give the engine replica back to the pool (idempotent; a no-op with one engine)."""
        if self.lease is not None:
            self.lease.release()


async def build_job(gateway: Gateway, kind: str, body: ChatCompletionRequest | CompletionRequest,
                    header: str | None, *, arm_header: str | None = None,
                    user_header: str | None = None) -> tuple[Selection, Job | None]:
    """Validate and build the job; (selection, None) means pass the request through unchanged."""
    cfg, tts = gateway.config, body.tts
    rid = new_id("chatcmpl" if kind == "chat" else "cmpl")
    selection = gateway.selector.select(tts.model_dump(exclude_none=True) if tts else None, header, body.model,
                                        arm_header=arm_header, user_key=body.user or user_header or rid)
    _cap("n", body.n, cfg.max_n)
    _cap("max_tokens", body.branch_tokens, cfg.max_tokens)
    if tts is not None:
        _cap("tts.max_total_tokens", tts.max_total_tokens, cfg.max_total_tokens)
        _cap("tts.max_branches", tts.max_branches, cfg.max_branches)
        _cap("tts.segment_tokens", tts.segment_tokens, cfg.max_tokens)
    if gateway.engine is not None:
        await gateway.engine_ready()
    reason = passthrough_reason(kind, body, selection)
    if reason is not None and gateway.passthrough:
        return replace(selection, passthrough=reason[0]), None
    if reason is not None and reason[0] != "multi_turn":  # a chat without pass-through still gets TTS, all turns kept
        raise BadRequest(f"{reason[1]}: test-time scaling cannot improve {reason[0].replace('_', ' ')} requests "
                         f"and this engine ({cfg.engine}) cannot pass them through", param=reason[1])
    if selection.controller is None and gateway.passthrough:
        return selection, None
    controller = selection.controller or PLAIN
    caps = Caps(max_branches=(tts and tts.max_branches) or cfg.max_branches,
                token_budget=(tts and tts.max_total_tokens) or cfg.max_total_tokens,
                budget_visible=bool(tts and tts.max_total_tokens),
                timeout_s=cfg.request_timeout_s,
                # built-ins take microseconds per step: a thread hop would cost more than it saves
                controller_in_thread=cfg.controller_in_thread and type(controller) not in _BUILTIN_TYPES)
    question = body.question()
    votes = vote_settings(cfg, tts, selection, controller)
    if gateway.catalog is not None:
        job = _replay_job(gateway, kind, rid, body, selection, controller, caps, question, votes)
    else:
        job = await _live_job(gateway, kind, rid, body, selection, controller, caps, question, votes)
    job.include_usage, job.progress = body.include_usage, tts.progress if tts else True
    job.return_token_ids = bool((body.model_extra or {}).get("return_token_ids"))
    return selection, job


def _replay_job(gateway, kind, rid, body, selection, controller, caps, question, votes) -> Job:
    catalog = gateway.catalog
    model = catalog.resolve_model(selection.model)
    store, qi = catalog.find(model, question)
    extractor = votes.store_extractor(store.meta.get("extractor"))  # the store's answers came from its extractor
    seed = body.seed if body.seed is not None else 0
    seeds = [seed + i for i in range(body.n)]
    prompt = estimate_tokens(question)

    def backend(i: int) -> BranchBackend:
        return ReplayBranchBackend(store, qi, seeds[i], prompt_tokens=prompt, kappa_probe=gateway.config.kappa_probe,
                                   max_branches=caps.max_branches)

    return Job(kind, rid, model, selection, controller, [backend(i) for i in range(len(seeds))], seeds,
               question, caps, source={"store": store.name, "question": qi}, fresh_backend=backend,
               aggregator=votes.answers_aggregator(store.meta), reply=ReplyPlan(votes.response, extractor))


async def _live_job(gateway, kind, rid, body, selection, controller, caps, question, votes) -> Job:
    cfg, engine = gateway.config, gateway.engine
    public = cfg.public_model or engine.model
    if selection.model and selection.model not in (public, engine.model):
        raise ModelNotFound(f"model {selection.model!r} is not served here; use {public!r} or an alias "
                            f"({', '.join(sorted(gateway.selector.aliases))})", param="model")
    lease, prompt_ids = await _tokenized(gateway, kind, body)
    seed = body.seed if body.seed is not None else random.randrange(2**31)
    seeds = [seed + 7_777 * i for i in range(body.n)]
    tts = body.tts
    extra = body.model_extra or {}
    suffix = votes.extractor.probe_suffix
    suffix_ids = await gateway.suffix_ids_for(suffix)
    close_ids = await gateway.suffix_ids_for(THINK_CLOSE) if THINK_CLOSE in suffix else []
    split = None if kind != "chat" else gateway.splitter(prompt_ids)
    sampling = Sampling(temperature=body.temperature if body.temperature is not None else cfg.temperature,
                        top_p=body.top_p if body.top_p is not None else cfg.top_p,
                        ignore_eos=bool(extra.get("ignore_eos", cfg.ignore_eos)))

    segment_tokens = (tts and tts.segment_tokens) or cfg.segment_tokens
    gateway.check_segments(segment_tokens)

    branch_backend: Any = TokenBranchBackend
    if cfg.branch_mode == "stream":
        branch_backend = functools.partial(StreamBranchBackend, spare_streams=cfg.stream_spares)

    def backend(i: int, retry: str = "") -> BranchBackend:
        return branch_backend(
            job.lease or engine, prompt_ids, segment_tokens=segment_tokens,
            probe_suffix_ids=suffix_ids, probe_max_tokens=cfg.probe_max_tokens,
            max_branch_tokens=body.branch_tokens or cfg.default_max_tokens, sampling=sampling, seed=seeds[i],
            request_id=f"{rid}-{i}{retry}", max_branches=caps.max_branches, token_budget=caps.token_budget,
            overlap=cfg.overlap, extractor=votes.extractor, think_close_ids=close_ids)

    source: dict[str, Any] = {"prompt_length": len(prompt_ids), **({"replica": lease.url} if lease else {})}
    job = Job(kind, rid, public, selection, controller, [], seeds, question, caps, source=source,
              fresh_backend=lambda i: backend(i, "-fallback"), lease=lease,
              rebuild=lambda: [backend(i, f"-retry{job.retries}") for i in range(len(seeds))],
              aggregator=votes.answers_aggregator(), reply=ReplyPlan(votes.response, votes.extractor, split))
    try:
        job.backends = [backend(i) for i in range(len(seeds))]
    except BaseException:
        job.release_lease()
        raise
    return job


async def _tokenized(gateway, kind, body) -> tuple[Lease | None, list[int]]:
    """The prompt's IDs, tokenized on the replica leased for this request (engine pools) or the engine.

    A replica found down while tokenizing (nothing ran yet) is taken out and the next one leased.
    """
    engine = gateway.engine
    if not isinstance(engine, ReplicaPool):
        return None, await _prompt_ids(gateway, kind, body, engine)
    # raises EngineDown (502) once no replica is left
    return await engine.first(lambda replica: _prompt_ids(gateway, kind, body, replica))


async def _prompt_ids(gateway, kind, body, engine: TokenEngine) -> list[int]:
    if kind == "chat":
        extra = dict(gateway.config.chat_template_kwargs)
        extra.update((body.model_extra or {}).get("chat_template_kwargs") or {})
        return await engine.tokenize_chat(body.plain_messages(), **extra)
    if isinstance(body.prompt, list) and body.prompt and all(type(t) is int for t in body.prompt):
        return list(body.prompt)
    if isinstance(body.prompt, str):
        return await engine.tokenize_text(body.prompt)
    raise BadRequest("prompt must be one string or a list of token ids", param="prompt")


def _cap(param: str, value: int | None, cap: int) -> None:
    if value is not None and value > cap:
        raise BadRequest(f"{param}={value} is above this gateway's cap of {cap}", param=param)

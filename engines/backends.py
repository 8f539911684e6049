"""Branch backends: what one controller action does to one branch, as a list of `Unit`s.

The executor drives a *branch backend*, not an engine: `BranchBackend` is its branch-level view of
where branches run, `open(b)`, `decode(b, segments, probe)`, `probe(b)`, `finish(b)`, `text(b)`, one level above
the engine seam (`TokenEngine`: single token calls). Each call returns the `Unit`s it produced (one per
decoded segment or probe) and the episode machine applies them in action order, checking the token
budget before each unit exactly as in replay (`autotts.controllers.episode`). Two backends:

* `TokenBranchBackend` (here) runs a branch on any `TokenEngine`: a segment is one `generate` call on
  prompt + branch IDs with ``max_tokens=Δ`` (a prefix-cache hit on the engine); a probe is one short
  call on a *copy* of the branch plus the extractor's answer-forcing suffix, its answer read from the
  probe's own token IDs and never appended; a branch finishes on EOS (``finish_reason == "stop"``) or at
  its token cap. All text is decoded from the token IDs held here, never taken from an engine's text.
* `autotts.server.replay.ReplayBranchBackend` answers from a replay store with the episode machine's recorded costs.

Every engine call is added to the backend's `Ledger`, which becomes the response's `usage`.

Round trips the episode does not wait for (``overlap``): with ``"probe"`` (the default) a probe and the
branch's next segment of the same action (``Continue(b, segments=2)``) go to the engine together (the
probe reads a copy of the branch; the segment does not depend on the probe's answer), so both run in
one scheduling step; ``"off"`` makes one call after the other. With ``"ahead"`` the branch's next
segment also starts as soon as its action's last segment is back, before the controller has decided:
the next ``Continue`` takes that call's result; a ``Prune``, a full read or the episode's end cancels
it (`settle`; vLLM aborts it). Its tokens, if it finished unused, are in the ledger
(``overshoot_tokens``, part of ``usage``); an aborted one's are lost to the count. Either way call `i`
of a branch gets the same seed as without overlapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from autotts.controllers.episode import STOP, Unit
from autotts.controllers.extractors import Extractor
from autotts.controllers.observation import BranchView

from .base import GenerateResult, Sampling, TokenEngine, branch_seed

#: splits a branch's token IDs into (reasoning IDs, content IDs) (`answers.split_tokens` with the model's tokens)
Splitter = Callable[[list[int]], "tuple[list[int] | None, list[int] | None]"]

__all__ = ["OVERLAP", "BranchBackend", "Ledger", "TokenBranchBackend", "probe_suffix_for"]

#: how much of a branch's work may overlap: off (one call after the other), probe (a probe with the next
#: segment of the same action), ahead (also the next segment before the controller decides)
OVERLAP = ("off", "probe", "ahead")


@dataclass(slots=True)
class Ledger:
    """Engine calls of one episode and their usage, as the engine reported it."""

    decode_calls: int = 0
    probe_calls: int = 0
    prompt_tokens: int = 0
    decode_tokens: int = 0
    probe_tokens: int = 0
    cached_tokens: int = 0
    overshoot_tokens: int = 0  # decoded ahead and then not used (a prune, the episode's end); in decode_tokens
    final_calls: int = 0  # engine calls after the controller answered: finishing the winner, a judge
    final_tokens: int = 0
    #: of probe_calls, the ones forcing the final answer of a branch that ended without one (cut at its
    #: token cap): no controller Probe asked for them, so `tts.probes` does not count them
    forced_probes: int = 0

    @property
    def completion_tokens(self) -> int:
        return self.decode_tokens + self.probe_tokens + self.final_tokens

    @property
    def calls(self) -> int:
        return self.decode_calls + self.probe_calls + self.final_calls

    def add(self, kind: str, prompt: int, completion: int, cached: int) -> None:
        self.prompt_tokens += prompt
        self.cached_tokens += cached
        if kind == "probe":
            self.probe_calls += 1
            self.probe_tokens += completion
        elif kind == "final":
            self.final_calls += 1
            self.final_tokens += completion
        else:
            self.decode_calls += 1
            self.decode_tokens += completion


class BranchBackend(Protocol):
    """The executor's branch-level view of where branches run (an engine, or a replay store)."""

    segment_tokens: int  # Δ
    branches_available: int | None  # branches that can still be opened (None: no limit)
    ledger: Ledger  # every engine call so far: the response's usage
    #: declared: the calls wait on I/O, so branches run as concurrent tasks and progress is reported per
    #: call (False: every call returns at once, as replay's do)
    concurrent: bool
    on_call: Callable[[], None] | None  # run after every engine call (set by the executor, `autotts collect`)
    sampling: Sampling | None  # the engine's sampling settings (None: nothing is sampled)

    def cap_tokens(self, budget: int) -> None:
        """Launch no more engine calls once the ledger holds `budget` completion tokens (a no-op where calls
        cost nothing: the machine's budget rule is exact either way)."""
        ...

    def open(self, branch: int) -> None: ...

    async def decode(self, branch: int, segments: int | None, probe: bool) -> list[Unit]: ...

    async def probe(self, branch: int) -> list[Unit]: ...

    async def finish(self, branch: int) -> None:
        """Decode an unfinished branch to its end (EOS or its token cap), for a response's full text."""
        ...

    async def text(self, branch: int, split: Splitter | None) -> tuple[str | None, str | None, list[int]]:
        """(content, reasoning, token IDs) of a branch, decoded from its token IDs (None where there is no text)."""
        ...

    async def ask(self, prompt: str, max_tokens: int) -> str:
        """One more call on the request's engine with a new chat (a judge's), its reply decoded from IDs."""
        ...

    def decoded_tokens(self, view: BranchView) -> int:
        """Tokens the branch behind `view` generated, probes excluded (what a captured store records)."""
        ...

    async def settle(self, running: set[int], final: bool = False) -> None:
        """Stop work started ahead for branches not in `running` (pruned, finished); `final`: the episode is
        over, stop everything (spare streams of `engines.streams` included)."""
        ...


class TokenBranchBackend:
    """Branches of one request on a token engine; token IDs end to end."""

    concurrent = True

    def __init__(self, engine: TokenEngine, prompt_ids: list[int], *, segment_tokens: int,
                 probe_suffix_ids: list[int], probe_max_tokens: int, max_branch_tokens: int,
                 sampling: Sampling, seed: int, request_id: str, max_branches: int | None = None,
                 token_budget: int | None = None, overlap: str = "probe", extractor: Extractor | None = None,
                 think_close_ids: list[int] | None = None) -> None:
        if segment_tokens < 1 or probe_max_tokens < 1 or max_branch_tokens < 1:
            raise ValueError("segment_tokens, probe_max_tokens and max_branch_tokens must be >= 1")
        self.engine = engine
        self.prompt_ids = list(prompt_ids)
        self.segment_tokens = segment_tokens
        self.suffix = list(probe_suffix_ids)
        self.think_close = list(think_close_ids or [])
        self.probe_max_tokens = probe_max_tokens
        self.max_branch_tokens = max_branch_tokens
        self.sampling = sampling
        self.seed = seed
        self.request_id = request_id
        self.branches_available = max_branches
        self.token_budget = token_budget
        self.extractor = extractor or Extractor()
        self.ledger = Ledger()
        self.on_call: Callable[[], None] | None = None
        self.tokens: dict[int, list[int]] = {}
        self.depth: dict[int, int] = {}
        self.finished: set[int] = set()
        self._calls: dict[int, int] = {}
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP)}, got {overlap!r}")
        self.overlap = overlap
        self.decode_ahead = overlap == "ahead"
        self._ahead: dict[int, asyncio.Task[GenerateResult]] = {}  # a branch's next segment, started early

    def cap_tokens(self, budget: int) -> None:
        self.token_budget = budget

    def open(self, branch: int) -> None:
        self.tokens[branch] = []
        self.depth[branch] = 0
        self._calls[branch] = 0

    def _gated(self) -> bool:
        return self.token_budget is not None and self.ledger.completion_tokens >= self.token_budget

    def _reserve(self, branch: int) -> int:
        """The branch's next call index (its seed), taken now."""
        call = self._calls[branch]
        self._calls[branch] = call + 1
        return call

    async def _generate(self, branch: int, prompt: list[int], max_tokens: int, kind: str,
                        call: int | None = None) -> GenerateResult:
        call = self._reserve(branch) if call is None else call
        sampling = self.sampling.with_seed(branch_seed(self.seed, branch, call))
        result = await self.engine.generate(prompt, max_tokens, sampling, f"{self.request_id}-b{branch}-{kind}{call}")
        self.ledger.add(kind, result.prompt_tokens, result.completion_tokens, result.cached_tokens)
        if self.on_call is not None:
            self.on_call()
        return result

    async def _probe(self, branch: int, call: int | None = None) -> tuple[str, int]:
        suffix = probe_suffix_for(self.tokens[branch], self.suffix, self.think_close)
        prompt = self.prompt_ids + self.tokens[branch] + suffix  # a copy; never appended
        result = await self._generate(branch, prompt, self.probe_max_tokens, "probe", call)
        text = await self.engine.detokenize(result.token_ids) if result.token_ids else ""
        if result.finish_reason == "length":  # cut by probe_max_tokens, maybe inside a character: drop its bytes
            text = text.rstrip("\ufffd")
        return self.extractor.probe(text), result.completion_tokens

    def _start_ahead(self, branch: int) -> None:
        """Start the branch's next segment now (its result is taken by the next decode of the branch)."""
        room = self.max_branch_tokens - len(self.tokens[branch])
        if room <= 0 or self._gated() or branch in self._ahead:
            return
        prompt = self.prompt_ids + self.tokens[branch]
        self._ahead[branch] = asyncio.create_task(
            self._generate(branch, prompt, min(self.segment_tokens, room), "decode", self._reserve(branch)))

    async def _segment(self, branch: int, max_tokens: int, whole: bool) -> GenerateResult:
        """The branch's next segment: the one started ahead when there is one, else a new call."""
        ahead = self._ahead.pop(branch, None)
        if ahead is not None and not whole:
            return await ahead
        if ahead is not None:
            await self._drop(ahead)
        return await self._generate(branch, self.prompt_ids + self.tokens[branch], max_tokens, "decode")

    async def _drop(self, task: asyncio.Task[GenerateResult]) -> None:
        """Cancel a segment started ahead (vLLM aborts it); if it had finished, its tokens were overshoot."""
        if task.done() and not task.cancelled() and task.exception() is None:
            self.ledger.overshoot_tokens += task.result().completion_tokens
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def settle(self, running: set[int], final: bool = False) -> None:
        for branch in [b for b in self._ahead if b not in running]:
            await self._drop(self._ahead.pop(branch))

    async def _finish(self, branch: int) -> tuple[str, int]:
        """The final answer of a finished branch: read by the extractor, else a forced probe."""
        self.finished.add(branch)
        answer = self.extractor.final(await self.engine.detokenize(self.tokens[branch]))
        if answer is not None:
            return answer, 0
        self.ledger.forced_probes += 1
        return await self._probe(branch)

    async def decode(self, branch: int, segments: int | None, probe: bool) -> list[Unit]:
        tokens, seg = self.tokens[branch], self.segment_tokens
        units: list[Unit] = []
        whole = segments is None and not probe  # one read to the end of the branch
        left = math.inf if segments is None else segments
        while left > 0:
            if self._gated():
                units.append(STOP)
                break
            room = self.max_branch_tokens - len(tokens)
            if room <= 0:  # already at its length cap: the branch ends here
                await self._ending(branch)
                final, spent = await self._finish(branch)
                units.append(Unit(spent, self.depth[branch], final, True))
                break
            ids, cost, ended = await self._read(branch, room if whole else min(seg, room), whole)
            tokens.extend(ids)
            depth = max(1, math.ceil(len(tokens) / seg)) if whole else self.depth[branch] + 1
            self.depth[branch] = depth
            if whole or ended or len(tokens) >= self.max_branch_tokens or not ids:
                await self._ending(branch)
                final, spent = await self._finish(branch)
                units.append(Unit(cost + spent, depth, final, True))
                break
            left -= 1
            if probe:
                answer, spent = await self._probe_after_segment(branch, left)
                units.append(Unit(cost + spent, depth, answer))
            else:
                units.append(Unit(cost, depth))
                if left <= 0 and self.decode_ahead:
                    self._start_ahead(branch)
        return units

    # --- the decode loop's hooks (engines.streams reads a stream instead) --------------------
    async def _read(self, branch: int, n: int, whole: bool) -> tuple[list[int], int, bool]:
        """The next up to `n` IDs of `branch`, the tokens they cost, and whether the branch ended (EOS)."""
        result = await self._segment(branch, n, whole)
        return result.token_ids, result.completion_tokens, result.finish_reason == "stop"

    async def _ending(self, branch: int) -> None:
        """The branch ends now (nothing to stop: each segment was its own call)."""

    async def _probe_after_segment(self, branch: int, left: float) -> tuple[str | None, int]:
        """A segment's probe, sent with the next segment when the branch goes on (overlap)."""
        probe_call = self._reserve(branch)
        if (left > 0 and self.overlap != "off") or self.decode_ahead:
            self._start_ahead(branch)
        return await self._probe(branch, probe_call)

    async def probe(self, branch: int) -> list[Unit]:
        if self._gated():
            return [STOP]
        answer, spent = await self._probe(branch)
        return [Unit(spent, None, answer)]

    async def finish(self, branch: int) -> None:
        tokens = self.tokens[branch]
        room = self.max_branch_tokens - len(tokens)
        if branch in self.finished or room <= 0 or self._gated():
            return
        result = await self._generate(branch, self.prompt_ids + tokens, room, "final")
        tokens.extend(result.token_ids)
        self.finished.add(branch)

    async def text(self, branch: int, split: Splitter | None) -> tuple[str | None, str | None, list[int]]:
        ids = self.tokens.get(branch, [])
        reasoning, content = split(ids) if split is not None else (None, ids)
        decode = self.engine.detokenize
        return (await decode(content) if content else None), (await decode(reasoning) if reasoning else None), ids

    async def ask(self, prompt: str, max_tokens: int) -> str:
        ids = await self.engine.tokenize_chat([{"role": "user", "content": prompt}], enable_thinking=False)
        sampling = Sampling(temperature=0.0, ignore_eos=False)  # the judge answers greedily
        result = await self.engine.generate(ids, max_tokens, sampling, f"{self.request_id}-judge")
        self.ledger.add("final", result.prompt_tokens, result.completion_tokens, result.cached_tokens)
        return await self.engine.detokenize(result.token_ids) if result.token_ids else ""

    def decoded_tokens(self, view: BranchView) -> int:
        return len(self.tokens.get(view.id, ()))


def probe_suffix_for(tokens: list[int], suffix: list[int], think_close: list[int]) -> list[int]:
    """The probe suffix for a branch of `tokens`: all of it, or, once the branch has closed its thinking
    itself (`think_close` among its tokens), only what follows the suffix's own close: a second
    ``</think>`` is a prompt no model was trained on (docs/tiny_model.md measured what it does)."""
    after = _after(suffix, think_close)
    return after if after is not None and _contains(tokens, think_close) else suffix


def _after(ids: list[int], marker: list[int]) -> list[int] | None:
    """`ids` after the first occurrence of `marker` (None when it is not there or empty)."""
    n = len(marker)
    for i in range(len(ids) - n + 1 if n else 0):
        if ids[i:i + n] == marker:
            return ids[i + n:]
    return None


def _contains(ids: list[int], marker: list[int]) -> bool:
    if len(marker) == 1:
        return marker[0] in ids  # the usual case, a special token: a C-speed scan
    return bool(marker) and _after(ids, marker) is not None

"""``branch_mode: stream``: one long streaming engine call per branch, read segment by segment.

`TokenBranchBackend` (``branch_mode: segments``) makes one engine call per segment, so every round
waits for its slowest call and re-sends the whole prefix. `StreamBranchBackend` opens one streamed call
per branch (prompt + branch so far, ``max_tokens`` = the branch's remaining length) the first time the
branch decodes and keeps it running: a ``Continue`` takes the next Δ token IDs already read from the
stream (or waits for them), so the branch decodes on while the controller decides. Probes stay side
calls on a copy of the prefix (prompt + tokens so far + probe suffix); the engine caches the running
call's full KV blocks, so they hit the prefix cache. A prune, the branch's end and the episode's end
close the stream (`settle`), which aborts the call in the engine (vLLM over HTTP: the closed connection).

Segment boundaries and costs are those of the segments mode: a segment is the next Δ IDs of the
stream, and it ends the branch when the stream finished right after it (EOS or the length cap), so a
segment is read only once one more token or the finish is in (one token's latency). The ledger counts
one decode call per stream, consumed tokens as they are consumed (the token budget sees exactly what
the machine charged) and, when a stream is closed, what it had decoded past the last consumed segment
as ``overshoot_tokens`` (in ``decode_tokens`` too: `usage` hides nothing). Tokens the engine decoded
but had not yet sent when the stream was closed are not seen, so not counted.

A stream has one seed (the branch's call index at its opening), so on a sampling engine the branch's
tokens differ from the segments mode's (one seed per segment); with greedy decoding they are the same.

``spare_streams = K`` (off by default) also keeps the streams of the next K branch ids running before the
controller opens them (branch ids are opening indices; a spare has the seed the branch would get), so a
``Branch`` takes a stream that is already decoding instead of putting Δ fresh decode steps on the round's
critical path. Spares never opened are closed at the episode's end (``settle(final=True)``); all they
decoded is overshoot, in `usage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from .backends import TokenBranchBackend
from .base import StreamChunk, TokenEngine, TokenStreamer, branch_seed
from .errors import EngineError

__all__ = ["BRANCH_MODES", "BranchStream", "StreamBranchBackend"]

#: how a branch runs on a token engine: one call per segment, or one streamed call per branch
BRANCH_MODES = ("segments", "stream")
#: largest chunk a stream is asked to send tokens in (a divisor of Δ: a segment plus the one token after it,
#: 1 + kΔ tokens, ends exactly on a chunk, so chunking adds no wait at a boundary)
MAX_CHUNK = 16


class BranchStream:
    """One running streamed call: a reader task buffers its token IDs; `take` hands them out in segments."""

    def __init__(self, chunks: AsyncIterator[StreamChunk]) -> None:
        self.ids: list[int] = []
        self.consumed = 0
        self.finish: str | None = None
        self.error: BaseException | None = None
        self.prompt_tokens: int | None = None
        self.cached_tokens = 0
        self._chunks = chunks
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for chunk in self._chunks:
                self.ids.extend(chunk.token_ids)
                if chunk.prompt_tokens is not None:
                    self.prompt_tokens, self.cached_tokens = chunk.prompt_tokens, chunk.cached_tokens or 0
                if chunk.finish_reason is not None:
                    self.finish = chunk.finish_reason
                self._changed.set()
            if self.finish is None:
                self.error = EngineError("the engine's stream ended without a finish reason")
        except Exception as exc:  # an EngineError: raised to the episode by the next `take`
            self.error = exc
        finally:
            self._changed.set()
            with contextlib.suppress(Exception):
                await self._chunks.aclose()  # type: ignore[attr-defined]

    @property
    def ahead(self) -> int:
        """Tokens read from the engine and not yet taken (overshoot if the stream is closed now)."""
        return len(self.ids) - self.consumed

    async def take(self, n: int) -> tuple[list[int], bool]:
        """The next up to `n` IDs and whether the stream ended right after them (fewer than `n`: it ended).

        Waits for one more ID than it takes, or the finish: a segment that ends the branch must say so,
        exactly as a segments-mode call that stops at EOS says ``finish_reason == "stop"``."""
        while self.ahead <= n and self.finish is None:
            if self.error is not None:
                raise self.error
            self._changed.clear()
            await self._changed.wait()
        if self.error is not None and self.finish is None:
            raise self.error
        out = self.ids[self.consumed:self.consumed + n]
        self.consumed += len(out)
        return out, self.finish is not None and self.ahead == 0

    async def close(self) -> int:
        """Abort the call if it still runs; the tokens it decoded past the last taken one."""
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        return self.ahead


class StreamBranchBackend(TokenBranchBackend):
    """`TokenBranchBackend` with one streamed engine call per branch (``capabilities.token_stream``)."""

    def __init__(self, engine: TokenEngine, prompt_ids: list[int], **kw) -> None:
        if not engine.capabilities.token_stream:
            raise ValueError(f"branch_mode stream needs an engine that streams token IDs; {engine.name} does not")
        kw.setdefault("overlap", "probe")
        spares = kw.pop("spare_streams", 0)
        super().__init__(engine, prompt_ids, **kw)
        if spares < 0:
            raise ValueError(f"spare_streams must be >= 0, got {spares}")
        self.spare_streams = spares
        self.decode_ahead = False  # a stream always decodes ahead; no segment calls to start early
        self._streams: dict[int, BranchStream] = {}

    def open(self, branch: int) -> None:
        super().open(branch)
        limit = self.branches_available
        for spare in range(branch + 1, branch + 1 + self.spare_streams):
            if (limit is not None and spare >= limit) or self._gated():
                break
            if spare not in self._streams and spare not in self.tokens:
                self._open(spare, [], 0)

    def _gated(self) -> bool:
        """The token budget counts what the machine charged: consumed tokens, overshoot not (it is in usage)."""
        spent = self.ledger.completion_tokens - self.ledger.overshoot_tokens
        return self.token_budget is not None and spent >= self.token_budget

    def _stream(self, branch: int) -> BranchStream:
        """The branch's running stream, opened on its first decode (to the branch's length cap).

        Every segment takes the call index its own call would take in the segments mode (the stream's
        seed is the first's), so probes keep their seeds and greedy decoding gives the same tokens."""
        stream = self._streams.get(branch)
        call = self._reserve(branch)
        return stream if stream is not None else self._open(branch, self.tokens[branch], call)

    def _open(self, branch: int, tokens: list[int], call: int) -> BranchStream:
        sampling = self.sampling.with_seed(branch_seed(self.seed, branch, call))
        streamer: TokenStreamer = self.engine  # type: ignore[assignment]  # declared by its capabilities
        chunks = streamer.stream(self.prompt_ids + tokens, self.max_branch_tokens - len(tokens), sampling,
                                 f"{self.request_id}-b{branch}-stream{call}",
                                 math.gcd(self.segment_tokens, MAX_CHUNK))
        stream = self._streams[branch] = BranchStream(chunks)
        self.ledger.decode_calls += 1
        return stream

    async def _take(self, branch: int, n: int) -> tuple[list[int], bool]:
        stream = self._stream(branch)
        known = stream.prompt_tokens is not None
        ids, ended = await stream.take(n)
        self.ledger.decode_tokens += len(ids)
        if not known and stream.prompt_tokens is not None:  # the engine's counts arrive with the last chunk
            self.ledger.prompt_tokens += stream.prompt_tokens
            self.ledger.cached_tokens += stream.cached_tokens
        if self.on_call is not None:
            self.on_call()
        return ids, ended

    async def _close(self, branch: int) -> None:
        stream = self._streams.pop(branch, None)
        if stream is None:
            return
        over = await stream.close()
        self.ledger.overshoot_tokens += over
        self.ledger.decode_tokens += over
        if stream.prompt_tokens is None:  # closed before the engine reported its counts: what it was sent
            self.ledger.prompt_tokens += len(self.prompt_ids) + len(self.tokens.get(branch, ())) - stream.consumed

    async def settle(self, running: set[int], final: bool = False) -> None:
        """Close the streams of branches no longer running; spares (not opened yet) at the episode's end."""
        for branch in [b for b in self._streams if b not in running and (b in self.tokens or final)]:
            await self._close(branch)

    async def _read(self, branch: int, n: int, whole: bool) -> tuple[list[int], int, bool]:
        ids, ended = await self._take(branch, n)
        return ids, len(ids), ended

    async def _ending(self, branch: int) -> None:
        await self._close(branch)

    async def _probe_after_segment(self, branch: int, left: float) -> tuple[str | None, int]:
        return await self._probe(branch)  # a side call on a copy of the prefix; the stream decodes on meanwhile

"""Server-sent events that are honest about test-time scaling.

While the episode runs, each round (and, on live engines, engine calls completing inside a long
round, at most every `Caps.progress_interval_s`) sends a normal ``chat.completion.chunk`` (or
``text_completion``) with an empty delta and a ``tts.progress`` object — round, branches running,
tokens so far, current vote leader — which standard clients ignore. Then the winning branch's
reasoning (``reasoning_content`` and ``reasoning``) and the response's content (server/reply.py: the same
text as the non-streaming ``content``, cut at code-point boundaries) arrive as deltas, a final chunk carries the
finish reason and the episode's `tts` report, and with ``stream_options.include_usage`` a last
chunk carries `usage`. Errors after the headers went out arrive as an OpenAI error event, which
the `openai` client raises as an `APIError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from autotts.controllers.errors import AutoTTSError

from .errors import error_body
from .protocol import chat_chunk, completion_chunk
from .summary import episode_tts, summary

if TYPE_CHECKING:
    from .gateway import Gateway
    from .jobs import Job

__all__ = ["DONE", "episode_stream", "sse"]

log = logging.getLogger(__name__)
DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'), ensure_ascii=False)}\n\n"


def _pieces(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i:i + size]


async def episode_stream(gateway: Gateway, job: Job) -> AsyncIterator[str]:
    """The SSE body of a streaming request; cancelling it (client gone) cancels the episode."""
    chat = job.kind == "chat"
    created = int(time.time())

    def chunk(index: int = 0, **kw: Any) -> str:
        if chat:
            return sse(chat_chunk(job.rid, job.model, created, index=index, **kw))
        if "delta" in kw:
            kw["text"] = kw.pop("delta").get("content", "")
        return sse(completion_chunk(job.rid, job.model, created, index=index, **kw))

    queue: asyncio.Queue[tuple[int, dict[str, Any]] | None] = asyncio.Queue()
    progress = (lambda i, snap: queue.put_nowait((i, snap))) if job.progress else None
    task = asyncio.create_task(gateway.run(job, progress))
    task.add_done_callback(lambda _: (gateway.release(job), queue.put_nowait(None)))
    try:
        if chat:
            for i in range(len(job.backends)):
                yield chunk(i, delta={"role": "assistant", "content": ""})
        while (item := await queue.get()) is not None:
            yield chunk(item[0], tts={"progress": item[1]})
        outcomes = task.result()
    except AutoTTSError as exc:
        yield sse(error_body(exc))
        yield DONE
        return
    except Exception:
        log.exception("streaming request %s failed", job.rid)
        yield sse(error_body("internal error while streaming the episode", type_="server_error",
                             code="internal_error"))
        yield DONE
        return
    finally:
        if not task.done():  # client went away (or the stream was closed): stop every engine call
            task.cancel()
    choices, usage, tts = summary(job, outcomes, gateway.config.engine)
    for i, (content, reasoning, finish, _) in enumerate(choices):
        if chat and reasoning:
            for piece in _pieces(reasoning, 1024):
                yield chunk(i, delta={"reasoning_content": piece, "reasoning": piece})
        for piece in _pieces(content or "", 16):
            yield chunk(i, delta={"content": piece})
        yield chunk(i, finish=finish, tts=episode_tts(job, i, outcomes[i], gateway.config.engine))
    if job.include_usage:
        yield chunk(usage=usage, tts=tts, choices=False)
    yield DONE

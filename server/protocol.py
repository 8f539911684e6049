"""Request and response shapes: OpenAI's, plus an optional `tts` object both ways.

Requests are pydantic models (unknown OpenAI fields are kept and passed through to the engine for
controller ``none``; unknown fields *inside* `tts` are an error). Responses are built by the functions
below, the only place their JSON is written, so the official `openai` client parses them unchanged:
`usage` counts every engine call of the episode and the extra `tts` object is ignored by clients
that do not know it.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["ChatCompletionRequest", "CompletionRequest", "FeedbackRequest", "TTSOptions", "chat_chunk", "chat_response",
           "completion_chunk", "completion_response", "model_list", "new_id", "usage_dict"]


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(value: Any) -> Any:
    """Reject text with lone UTF-16 surrogates anywhere in a JSON body (a ``"\\ud800"`` escape or bytes
    that are not UTF-8): Python keeps them in `str`, but they cannot be encoded again, so they would
    fail later in hashing, metrics labels or the response instead of as a 400 naming the field.
    Iterative, so a deeply nested body cannot exhaust the stack."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                raise PydanticCustomError("invalid_unicode", "{where} is not valid Unicode text (a lone surrogate, "
                                          "e.g. an unpaired \\ud800 escape)", {"where": where or "body"})
        elif isinstance(item, dict):
            for key, child in item.items():
                name = _printable(str(key))
                stack.append((key, f"{where}.{name} (the key)" if where else f"{name} (the key)"))
                stack.append((child, f"{where}.{name}" if where else name))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}" if where else str(i)) for i, child in enumerate(item))
    return value


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class TTSOptions(BaseModel):
    """The `tts` object of a request (all optional)."""

    model_config = ConfigDict(extra="forbid")

    controller: str | None = Field(None, description="controller spec or alias, e.g. 'cmc' or 'asc:n=32'")
    arm: str | None = Field(None, description="A/B arm by name (overrides the sticky assignment)")
    beta: float | None = Field(None, description="β of the controller (its declared range)")
    params: dict[str, Any] | None = Field(None, description="controller parameters, e.g. {'n': 16}")
    max_total_tokens: int | None = Field(None, ge=1, description="episode token cap (decode + probe)")
    max_branches: int | None = Field(None, ge=1, description="most branches this episode may open")
    segment_tokens: int | None = Field(None, ge=1, description="live engines: tokens per segment (Δ)")
    progress: bool = Field(True, description="stream progress chunks while the episode runs")
    extractor: str | dict[str, Any] | None = Field(
        None, description="how answers are read: boxed, number, choice, regex, json, or {kind, pattern, field, suffix}")
    aggregator: str | None = Field(None, description="how answers vote: exact, normalized, math, semantic, judge")
    response: Literal["full", "answer"] | None = Field(
        None, description="full: the winning branch's own text; answer: a short answer sentence")


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    seed: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tts: TTSOptions | None = None
    user: str | None = None  # OpenAI's end-user id; the A/B assignment's sticky key

    _unicode = model_validator(mode="before")(check_unicode)

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionRequest(_Base):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def branch_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def question(self) -> str:
        users = [m for m in self.messages if m.role == "user"]
        return users[-1].text() if users else ""

    def plain_messages(self) -> list[dict[str, Any]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Base):
    prompt: str | list[str] | list[int]

    @property
    def branch_tokens(self) -> int | None:
        return self.max_tokens

    def question(self) -> str:
        if isinstance(self.prompt, list):
            return str(self.prompt[0]) if len(self.prompt) == 1 and isinstance(self.prompt[0], str) else ""
        return self.prompt


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a completion id and either ``correct`` or the ``gold`` answer."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    correct: bool | None = None
    gold: str | None = None

    _unicode = model_validator(mode="before")(check_unicode)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_dict(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def model_list(names: list[str], created: int) -> dict[str, Any]:
    """The body of ``GET /v1/models``."""
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "autotts"}
                                       for name in names]}


Answer = tuple[str | None, str | None, str, list[int] | None]  # content, reasoning, finish_reason, token IDs


def _ids(token_ids: list[int] | None) -> dict[str, Any]:
    return {} if token_ids is None else {"token_ids": token_ids}


def chat_response(rid: str, model: str, answers: list[Answer], usage: dict[str, Any],
                  tts: dict[str, Any]) -> dict[str, Any]:
    """`answers`: one (content, reasoning, finish_reason, token IDs or None) per choice; the reasoning goes
    under both ``reasoning_content`` and ``reasoning`` (newer vLLM's name)."""
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "finish_reason": finish, "logprobs": None, **_ids(ids),
                         "message": {"role": "assistant", "content": content, "reasoning_content": reasoning,
                                     "reasoning": reasoning}}
                        for i, (content, reasoning, finish, ids) in enumerate(answers)],
            "usage": usage, "tts": tts}


def completion_response(rid: str, model: str, answers: list[Answer], usage: dict[str, Any],
                        tts: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "text": content or "", "finish_reason": finish, "logprobs": None, **_ids(ids)}
                        for i, (content, _, finish, ids) in enumerate(answers)],
            "usage": usage, "tts": tts}


def chat_chunk(rid: str, model: str, created: int, *, index: int = 0, delta: dict[str, Any] | None = None,
               finish: str | None = None, tts: dict[str, Any] | None = None,
               usage: dict[str, Any] | None = None, choices: bool = True) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": index, "delta": delta or {}, "finish_reason": finish, "logprobs": None}]
        if choices else []}
    if tts is not None:
        chunk["tts"] = tts
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def completion_chunk(rid: str, model: str, created: int, *, index: int = 0, text: str = "",
                     finish: str | None = None, tts: dict[str, Any] | None = None,
                     usage: dict[str, Any] | None = None, choices: bool = True) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": None}] if choices else []}
    if tts is not None:
        chunk["tts"] = tts
    if usage is not None:
        chunk["usage"] = usage
    return chunk


Kind = Literal["chat", "completion"]

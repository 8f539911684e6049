"""The round driver shared by the LLM explorers: prompt, tool calls, accounting, budget, submit.

A subclass adapts one wire format: `_open` builds the conversation, `_call` sends it and returns a
`Reply` (text, tool calls, usage), `_append` adds the assistant turn and the tool results. Every
call's usage is accounted at once (so a run killed mid-round still knows what it spent); a round
ends on `submit`, when the turn or evaluation limit is reached, or when the budget is spent.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from ..history import eligible
from .accounting import Pricing
from .base import Explorer, ExplorerError, Session
from .prompts import SYSTEM, round_prompt
from .tools import ToolBox

__all__ = ["LLMExplorer", "Reply", "ToolCall"]

log = logging.getLogger(__name__)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Any  # parsed JSON object, or None when it could not be parsed
    raw: str = ""


@dataclass
class Reply:
    text: str
    calls: list[ToolCall]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    raw: Any = field(default=None, repr=False)


class LLMExplorer(Explorer):
    """Shared driver; see `AnthropicExplorer` and `OpenAIExplorer`."""

    key_env = ""

    def __init__(self, *, model: str, pricing: Pricing, base_url: str | None = None, api_key_env: str | None = None,
                 max_tokens: int = 4096, max_turns: int = 12, max_evaluations: int = 4,
                 timeout_s: float = 300.0) -> None:
        self.model, self.pricing, self.base_url = model, pricing, base_url
        self.api_key_env = api_key_env or self.key_env
        self.max_tokens, self.max_turns, self.max_evaluations, self.timeout_s = (
            max_tokens, max_turns, max_evaluations, timeout_s)
        self._client: Any = None

    def describe(self) -> dict[str, Any]:
        return {"explorer": self.name, "model": self.model, "base_url": self.base_url,
                "price_in_per_mtok": self.pricing.input_per_mtok, "price_out_per_mtok": self.pricing.output_per_mtok,
                "max_turns": self.max_turns, "max_evaluations": self.max_evaluations}

    def check(self) -> None:
        self.api_key()
        self.client()

    @abstractmethod
    def client(self) -> Any: ...

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ExplorerError(f"{self.name} explorer: set the API key in the environment variable "
                                f"{self.api_key_env} (or name another with --api-key-env)")
        return key

    # --- adapter hooks -------------------------------------------------------------------------
    @abstractmethod
    def _open(self, system: str, user: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _call(self, messages: list[dict[str, Any]]) -> Reply: ...

    @abstractmethod
    def _append(self, messages: list[dict[str, Any]], reply: Reply,
                results: list[tuple[ToolCall, str, bool]]) -> None: ...

    @abstractmethod
    def _nudge(self, messages: list[dict[str, Any]], reply: Reply, text: str) -> None: ...

    # --- the round -------------------------------------------------------------------------------
    def run_round(self, session: Session) -> None:
        records = session.records()
        best = sorted((r for r in records if eligible(r)), key=lambda r: -r["objective"])[:2]
        sources = {r["id"]: session.source_of(r["id"]) or "" for r in best}
        prompt = round_prompt(records, session.baselines(), session.gamma, sources, session.round,
                              self.max_evaluations, session.objective)
        messages = self._open(SYSTEM, prompt)
        box = ToolBox(session)
        evaluations = nudges = 0
        for _ in range(self.max_turns):
            left = session.budget_left_usd()
            if left is not None and left <= 0:
                log.info("%s explorer: budget spent, ending round %d", self.name, session.round)
                break
            reply = self._call(messages)
            session.add_usage(model=self.model, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                              cache_read_tokens=reply.cache_read_tokens, cache_write_tokens=reply.cache_write_tokens,
                              usd=self.pricing.usd(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                                                   cache_read_tokens=reply.cache_read_tokens,
                                                   cache_write_tokens=reply.cache_write_tokens))
            if not reply.calls:
                if nudges >= 1:
                    break
                nudges += 1
                self._nudge(messages, reply, "Please continue by calling a tool: evaluate_controller with new code, "
                                             "or submit with your best candidate id.")
                continue
            results = []
            for call in reply.calls:
                if call.arguments is None:
                    results.append((call, f"arguments of {call.name} are not valid JSON: {call.raw[:200]!r}", True))
                elif call.name == "evaluate_controller" and evaluations >= self.max_evaluations:
                    results.append((call, f"evaluation limit of {self.max_evaluations} per round reached; "
                                          "call submit", True))
                else:
                    evaluations += call.name == "evaluate_controller"
                    text, is_error = box.call(call.name, call.arguments)
                    results.append((call, text, is_error))
            self._append(messages, reply, results)
            if box.submitted:
                return
        if box.evaluated:
            done = [r for r in session.records() if r["id"] in box.evaluated and eligible(r)]
            if done:
                session.submit(max(done, key=lambda r: r["objective"])["id"], "round ended without submit")


def parse_arguments(raw: Any) -> Any:
    """Tool-call arguments as a dict (OpenAI sends a JSON string), or None when malformed."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None

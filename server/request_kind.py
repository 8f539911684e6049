"""What kind of request this is: one TTS can improve, or one to pass through; and how it reads and votes.

Test-time scaling votes over answers, so requests whose output is not an answer to vote on go to the
engine untouched (`passthrough_reason`): tool calls (``tools``, a ``tool`` turn, an assistant turn with
``tool_calls``) and structured output (``response_format`` other than text), and multi-turn conversations
that did not ask for a controller themselves (a body, header or model alias): a default or A/B controller
is not applied to a chat the app did not mean for it. The reason goes into ``tts.passthrough``.

`vote_settings` resolves the extractor, aggregator and response of a request: the request's ``tts`` field,
else its A/B arm's, else (aggregator only) the one the controller names, else the gateway config's; an
aggregator nobody names is the answers' own: what a replay store records (exact strings for the bundled
ones, as `autotts eval` votes), live the extractor's default (math for boxed answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotts.controllers.aggregators import Aggregator, parse_aggregator, recorded_aggregator
from autotts.controllers.base import Controller
from autotts.controllers.errors import VoteSpecError
from autotts.controllers.extractors import Extractor, parse_extractor

from .config import GatewayConfig
from .errors import BadRequest
from .selection import Selection

__all__ = ["VoteSettings", "passthrough_reason", "vote_settings"]

_ASKED = ("body", "header", "model", "arm")  # sources where the request itself named its controller or arm


def passthrough_reason(kind: str, body: Any, selection: Selection) -> tuple[str, str] | None:
    """(reason, the field that decided it) when the request goes to the engine untouched, else None."""
    extra = body.model_extra or {}
    if extra.get("tools") or extra.get("functions"):
        return "tool_calls", "tools" if extra.get("tools") else "functions"
    fmt = extra.get("response_format")
    if fmt and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return "response_format", "response_format"
    if kind != "chat":
        return None
    messages = body.messages
    if any(m.role in ("tool", "function") or (m.model_extra or {}).get("tool_calls") for m in messages):
        return "tool_calls", "messages"
    turns = sum(m.role == "user" for m in messages)
    if (turns > 1 or any(m.role == "assistant" for m in messages)) and selection.source not in _ASKED:
        return "multi_turn", "messages"
    return None


@dataclass(frozen=True)
class VoteSettings:
    extractor: Extractor
    aggregator: Aggregator | None  # None: nobody named one, the answers' own applies (`answers_aggregator`)
    response: str
    extractor_asked: bool  # the request or its arm named the extractor (not the config default)

    def answers_aggregator(self, store_meta: dict[str, Any] | None = None) -> Aggregator:
        """How the episode votes: the one named, else the replay store's recorded one (exact strings when it
        records none, as `autotts eval` votes on it), else, live, the extractor's default (math for boxed)."""
        if self.aggregator is not None:
            return self.aggregator
        if store_meta is not None:
            return recorded_aggregator(store_meta)
        return parse_aggregator(self.extractor.default_aggregator)

    def store_extractor(self, recorded: dict[str, Any] | None) -> Extractor:
        """The extractor of a replay store's answers (boxed when the store does not say); a request that asked
        for another one is refused, since the recorded answers cannot be read again."""
        stored = parse_extractor(recorded, "store extractor")
        if self.extractor_asked and self.extractor.spec() != stored.spec():
            raise BadRequest(f"tts.extractor: this replay store recorded its answers with the {stored.kind} "
                             f"extractor ({stored.spec()}); it cannot answer with {self.extractor.spec()}",
                             param="tts.extractor")
        return stored


def vote_settings(cfg: GatewayConfig, tts: Any, selection: Selection, controller: Controller) -> VoteSettings:
    arm = dict(selection.options)
    asked = {k: getattr(tts, k, None) if tts is not None else None for k in ("extractor", "aggregator", "response")}
    try:
        if asked["extractor"] is not None:
            extractor = parse_extractor(asked["extractor"], "tts.extractor")
        elif arm.get("extractor") is not None:
            extractor = parse_extractor(arm["extractor"], f"arms[{selection.arm}].extractor")
        else:
            extractor = parse_extractor(cfg.extractor, "extractor")
            if extractor.kind == "boxed" and extractor.suffix is None:
                extractor = Extractor(suffix=cfg.probe_suffix)  # probe_suffix: the default extractor's suffix
        named = getattr(controller, "aggregator", None)  # built-ins, artifacts in process and sandboxed alike
        chosen = asked["aggregator"] or arm.get("aggregator") or named or cfg.aggregator
        aggregator = None if chosen is None else parse_aggregator(
            chosen, "tts.aggregator" if asked["aggregator"] else "aggregator")
    except VoteSpecError as exc:
        param = str(exc).split(":")[0].split(" ")[0]
        raise BadRequest(str(exc), param=param) from None
    response = asked["response"] or arm.get("response") or cfg.response
    return VoteSettings(extractor, aggregator, response, asked["extractor"] is not None or "extractor" in arm)

"""The parent's reading of a sandboxed worker's batches: compact fields in, validated actions out.

A worker sends each step's batch as ``[ints, texts]`` (`controller_worker._encode`: four fields per action,
answers' text apart). Nothing in it is trusted: every action is checked as its constructor would check it
(`actions.from_compact`). Actions are immutable, so fields seen before decode to the same object again from
a bounded cache, which makes the commonest step (dozens of single-segment continues) cheap to read.
"""

from __future__ import annotations

from typing import Any

from autotts.controllers.actions import ANSWER, from_compact
from autotts.controllers.errors import EpisodeError, IllegalActionError

__all__ = ["decode_batch"]


class _NotAnAction:
    """Stands for something the worker's controller returned that is not an action (its repr only)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def decode_batch(item: Any) -> Any:
    """A step's reply (``[ints, texts]``, see `controller_worker._encode`) as the machine's input, every
    action validated as its constructor would; raises `EpisodeError` for a step that raised and
    `IllegalActionError` for anything malformed."""
    if isinstance(item, dict):
        if "error" in item:
            raise EpisodeError(f"the controller raised {str(item['error'])[:2000]}")
        if "type" in item:  # the step returned something that is not a list: the machine names it
            return type(str(item["type"])[:80], (), {})()
        raise IllegalActionError("sandboxed worker sent an unknown reply")
    try:
        ints, texts = item
        if type(ints) is not list or type(texts) is not list or len(ints) % 4:
            raise TypeError
        batch: list[Any] = []
        known = _DECODED.get
        it = iter(ints)
        for key in zip(it, it, it, it, strict=True):
            action = known(key)
            if action is None:
                action = _decode(key, texts)
            batch.append(action)
    except (TypeError, ValueError, IndexError):
        raise IllegalActionError(f"sandboxed worker sent a malformed batch: {str(item)[:120]}") from None
    return batch


_DECODED: dict[tuple, Any] = {}  # compact fields → their action (immutable, so one object serves every batch)
_DECODED_MAX = 1 << 16


def _decode(key: tuple, texts: list) -> Any:
    """The action of compact fields not decoded before (`from_compact`), kept for the next time unless it
    carries text (an answer, or the repr of something that is not an action)."""
    kind, x, segments, probe = key
    if kind == ANSWER:
        return from_compact(kind, texts[x] if type(x) is int else None, segments, probe)
    if kind == -1:
        return _NotAnAction(str(texts[x])[:80])
    action = from_compact(kind, x, segments, probe)
    if len(_DECODED) < _DECODED_MAX:
        _DECODED[key] = action
    return action

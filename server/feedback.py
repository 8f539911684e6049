"""Correctness feedback: remember recent completions so a later label joins to their arm and controller.

`FeedbackStore` keeps the last `capacity` completions (id → arm, controller, version, model, answer) in
an LRU map; ``POST /v1/feedback`` looks the id up, judges a ``gold`` answer with
`autotts.controllers.normalize.is_correct` (or takes ``correct`` as given) and counts it once in
``autotts_feedback_total``. A completion can be labelled once: a second label is rejected (409), so
retried webhooks never double-count. An unknown (or evicted) id is a 404. Memory only: a restarted
gateway, or another replica, does not know the id — send feedback to the replica that answered, or
accept those 404s as lost labels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from autotts.controllers.normalize import is_correct

from .errors import AlreadyLabelled, BadRequest, UnknownCompletion

__all__ = ["AlreadyLabelled", "CompletionRecord", "FeedbackStore", "UnknownCompletion"]


@dataclass
class CompletionRecord:
    labels: dict[str, str]  # controller, controller_version, arm, model (as on every request metric)
    spec: str
    answer: str | None
    correct: bool | None = None  # set once labelled


class FeedbackStore:
    def __init__(self, capacity: int = 100_000, mode: str = "math") -> None:
        self.capacity = capacity
        self.mode = mode
        self._records: OrderedDict[str, CompletionRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def add(self, rid: str, record: CompletionRecord) -> None:
        self._records[rid] = record
        self._records.move_to_end(rid)
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def label(self, rid: str, *, correct: bool | None = None, gold: str | None = None) -> CompletionRecord:
        """Judge completion `rid` (exactly one of `correct`, `gold`); returns the labelled record."""
        if (correct is None) == (gold is None):
            raise BadRequest("feedback needs exactly one of 'correct' (true/false) or 'gold' (the answer)",
                             param="correct" if correct is not None else "gold")
        record = self._records.get(rid)
        if record is None:
            raise UnknownCompletion(f"no recent completion has id {rid!r} (unknown, or older than the last "
                                    f"{self.capacity} completions)", param="id")
        if record.correct is not None:
            raise AlreadyLabelled(f"completion {rid!r} is already labelled (correct={record.correct}); "
                                  "a completion is counted once", param="id")
        record.correct = bool(correct) if gold is None else is_correct(record.answer, gold, self.mode)
        self._records.move_to_end(rid)
        return record

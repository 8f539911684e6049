"""The one interface every explorer implements, and the session the loop hands it each round.

An explorer's round: look at the history (search stores only; held-out results never appear in
it), propose controller code, have it evaluated through `Session.evaluate` / `evaluate_many`,
and optionally `submit` the candidate it believes best. LLM explorers also report the tokens
and dollars of every call through `Session.add_usage`, which the loop persists at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..errors import ExplorerError

__all__ = ["Explorer", "ExplorerError", "Session"]


class Session(ABC):
    """What the loop offers an explorer during one round."""

    round: int
    gamma: float
    objective: str = "gamma"  # what candidates score (discovery.objective.OBJECTIVES)

    @abstractmethod
    def records(self) -> list[dict[str, Any]]:
        """Every finished evaluation so far (search stores only), oldest first."""

    @abstractmethod
    def baselines(self) -> list[dict[str, Any]]:
        """The built-in controllers' points on the search stores."""

    @abstractmethod
    def evaluate(self, source: str, note: str = "", meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evaluate one candidate, raced against the best so far (or return the earlier identical one)."""

    @abstractmethod
    def evaluate_many(self, items: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Evaluate several (source, note, meta) candidates, raced together, concurrently, in order."""

    @abstractmethod
    def source_of(self, candidate_id: str) -> str | None:
        """The code of an evaluated candidate."""

    @abstractmethod
    def add_usage(self, *, model: str, input_tokens: int, output_tokens: int, usd: float,
                  **extra: Any) -> None:
        """Account one LLM call (persisted immediately)."""

    @abstractmethod
    def budget_left_usd(self) -> float | None:
        """Dollars left under --budget-usd (None: no budget)."""

    @abstractmethod
    def submit(self, candidate_id: str, reason: str = "") -> None:
        """The explorer's pick of the round."""


class Explorer(ABC):
    """Proposes controllers; one `run_round` per loop round."""

    name: str = "explorer"

    @abstractmethod
    def run_round(self, session: Session) -> None: ...

    def check(self) -> None:  # noqa: B027 - optional hook, nothing to check by default
        """Fail fast (before any work) when the explorer cannot run, e.g. no API key."""

    def describe(self) -> dict[str, Any]:
        """Provenance for artifacts and the report (model, prices; never keys)."""
        return {"explorer": self.name}

"""The controller contract: declared parameters, an optional β schedule, and `step(obs)`.

A controller is a plain, deterministic object. Its instance holds only configuration (parameters,
β and the knobs the schedule derives from β); everything that changes during an episode lives in
`obs.memory`, so one instance serves any number of episodes, concurrently or not.

Two ways to write one:

* subclass `Controller` and implement `step(obs) -> list[Action]`, or
* subclass `GeneratorController` and write the episode as a generator that yields batches of
  actions and finally `return`s the answer; the observation is updated in place between yields.
"""

from __future__ import annotations

import math
from collections import namedtuple
from itertools import pairwise

from .actions import Action, Answer
from .errors import ControllerSpecError, EpisodeError

TYPE_CHECKING = False  # annotations only: a sandboxed worker need not import typing or dataclasses
if TYPE_CHECKING:
    from collections.abc import Generator
    from typing import Any, ClassVar

    from .observation import Observation

__all__ = ["Controller", "GeneratorController", "Param", "check_schedule", "check_schedule_table"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Param(namedtuple("Param", "type default low high help", defaults=(None, None, ""))):
    """A declared controller parameter: its type, default, bounds (`low`, `high`) and a one-line help."""

    __slots__ = ()

    def describe(self) -> dict[str, Any]:
        """The parameter as plain JSON (artifact manifests, ``GET /v1/controllers``)."""
        return {"type": self.type.__name__, "default": self.default, "low": self.low, "high": self.high,
                "help": self.help}

    def coerce(self, name: str, owner: str, value: Any) -> Any:
        """`value` converted to this parameter's type and checked against its bounds."""
        where = f"parameter {name!r} of controller {owner!r}"
        try:
            if self.type is bool:
                if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                    value = value.lower() in _TRUE
                elif not isinstance(value, bool):
                    raise ValueError
            elif self.type is int:
                if isinstance(value, bool):
                    raise ValueError
                if isinstance(value, float):
                    if not value.is_integer():
                        raise ValueError
                    value = int(value)
                value = int(value) if isinstance(value, str) else value
                if not isinstance(value, int):
                    raise ValueError
            elif self.type is float:
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise ControllerSpecError(
                f"{where} must be {self.type.__name__}, got {value!r}") from None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ControllerSpecError(
                f"{where} must be in [{self.low}, {self.high}], got {value!r}")
        return value


class Controller:
    """Base class of every controller (built-in or discovered)."""

    name: ClassVar[str] = "controller"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    #: the aggregator the controller's votes are meant for (``"math"``, ``"semantic"``...; None: exact strings,
    #: or whatever the request, arm or config names); `autotts.controllers.aggregators`
    aggregator: ClassVar[str | None] = None
    parameters: ClassVar[dict[str, Param]] = {}
    #: closed interval of β, or None when the controller has no β parameterisation
    beta_range: ClassVar[tuple[float, float] | None] = None
    default_beta: ClassVar[float | None] = None
    #: knobs of `schedule` that bound spending: they must never decrease as β grows
    budget_knobs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, beta: float | str | None = None, **params: Any) -> None:
        declared = type(self).parameters
        unknown = sorted(set(params) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            if "beta" not in known and self.beta_range is not None:
                known += " (and beta)"
            raise ControllerSpecError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))} for controller "
                f"{self.name!r}; known: {known}")
        self.params: dict[str, Any] = {k: p.default for k, p in declared.items()}
        for key, value in params.items():
            self.params[key] = declared[key].coerce(key, self.name, value)
        self.beta = self._check_beta(beta)
        self.knobs: dict[str, Any] = self.schedule(self.beta) if self.beta is not None else {}

    def _check_beta(self, beta: float | str | None) -> float | None:
        if self.beta_range is None:
            if beta is not None:
                raise ControllerSpecError(f"controller {self.name!r} takes no beta")
            return None
        if beta is None:
            beta = self.default_beta if self.default_beta is not None else self.beta_range[0]
        low, high = self.beta_range
        value = Param(float, None, low, high).coerce("beta", self.name, beta)
        return float(value)

    @classmethod
    def schedule(cls, beta: float) -> dict[str, Any]:
        """β → knob values. Deterministic and monotone in β; override in β-controllers."""
        return {}

    def step(self, obs: Observation) -> list[Action]:
        """The next batch of actions for the episode `obs` describes."""
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """The spec string that recreates this controller, e.g. ``cmc:beta=0.5``."""
        parts = [] if self.beta is None else [f"beta={self.beta:g}"]
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                  for k, v in self.params.items() if v != type(self).parameters[k].default]
        return self.name + (":" + ",".join(parts) if parts else "")

    def __repr__(self) -> str:
        return f"<controller {self.spec} v{self.version}>"


class GeneratorController(Controller):
    """A controller written as one generator per episode; `step` drives it.

    `run(obs)` yields a batch of actions per step and `return`s the answer string at the end
    (yielding a batch that ends with `Answer` works too).
    """

    def run(self, obs: Observation) -> Generator[list[Action], None, str | None]:
        raise NotImplementedError

    def step(self, obs: Observation) -> list[Action]:
        episode = obs.memory.get("_episode")
        if episode is None:
            episode = obs.memory["_episode"] = self.run(obs)
        try:
            return next(episode)
        except StopIteration as stop:
            if isinstance(stop.value, str):
                return [Answer(stop.value)]
            raise EpisodeError(f"controller {self.name!r} ended its episode without an answer") from None


def check_schedule(cls: type[Controller], points: int = 41) -> list[dict[str, Any]]:
    """Check a β schedule on a grid and return it as a table ([{"beta": β, knob: value}]).

    Every numeric knob must be monotone in β (one direction throughout) and every knob listed
    in `budget_knobs` must never decrease: a larger β may never shrink the token envelope.
    """
    if cls.beta_range is None:
        return []
    low, high = cls.beta_range
    grid = [low + (high - low) * i / (points - 1) for i in range(points)]
    table = [{"beta": round(b, 6), **cls.schedule(b)} for b in grid]
    check_schedule_table(cls.name, table, cls.budget_knobs)
    return table


def check_schedule_table(name: str, table: list[dict[str, Any]], budget_knobs: tuple[str, ...] | list[str]) -> None:
    """The rules of `check_schedule` applied to a schedule table (e.g. one a sandboxed worker reported)."""
    if not table:
        return
    for knob in table[0]:
        if knob == "beta" or not all(isinstance(row.get(knob), int | float) for row in table):
            continue
        values = [row[knob] for row in table]
        steps = [b - a for a, b in pairwise(values)]
        if knob in budget_knobs and any(s < 0 for s in steps):
            raise ControllerSpecError(f"{name}: budget knob {knob!r} decreases as beta grows: {values}")
        if any(s > 0 for s in steps) and any(s < 0 for s in steps):
            raise ControllerSpecError(f"{name}: knob {knob!r} is not monotone in beta: {values}")
    missing = [k for k in budget_knobs if k not in table[0]]
    if missing:
        raise ControllerSpecError(f"{name}: budget_knobs {missing} are not in schedule()")

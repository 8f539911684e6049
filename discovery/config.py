"""The settings of a discovery run, validated once, stored in ``run.json`` and rebuilt on resume.

Errors name the setting and the bad value. `build_explorer` turns the explorer settings into an
`Explorer`; API keys are never stored, only the name of the environment variable holding one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from autotts.sandbox import Limits

from .errors import DiscoverConfigError
from .explorers.accounting import DEFAULT_MODELS, Pricing
from .explorers.base import Explorer
from .objective import OBJECTIVES

__all__ = ["DiscoverConfig", "DiscoverConfigError", "build_explorer"]

EXPLORERS = ("local", "anthropic", "openai")


@dataclass
class DiscoverConfig:
    explorer: str
    data: list[str]
    heldout: list[str] = field(default_factory=list)
    rounds: int = 10
    betas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    gamma_per_mtok: float = 2.0  # accuracy points per million tokens per question
    objective: str = "gamma"  # or "cmc-savings": tokens saved against the cmc sweep at matched accuracy
    budget_usd: float | None = None
    time_limit_min: float | None = None
    seed: int = 0
    search_seeds: int = 10
    heldout_seeds: int = 30
    population: int = 4
    race_stages: list[int] = field(default_factory=lambda: [2, 5])  # seeds after each racing stage ([]: no race)
    race_eta: int = 3  # each racing stage keeps the best 1/eta
    race_z: float = 1.0  # ... whose objective + z standard errors reaches the incumbent's
    workers: int = 2
    ray_address: str | None = None  # --ray: "" a local instance, else a cluster address
    top_k: int = 3
    beta_policy: str = "reject"
    cpu_seconds: float = 600.0
    memory_mb: int = 3072
    wall_seconds: float = 900.0
    allow_unsandboxed: bool = False  # --no-sandbox: plain subprocess workers where no kernel sandbox works
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    price_in: float | None = None
    price_out: float | None = None
    max_tokens: int = 4096
    max_turns: int = 12
    max_evaluations: int = 4

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> DiscoverConfigError:
            return DiscoverConfigError(f"discover: setting {name!r} {why}, got {getattr(self, name)!r}")

        if self.explorer not in EXPLORERS:
            raise bad("explorer", f"must be one of {', '.join(EXPLORERS)}")
        if not self.data:
            raise bad("data", "needs at least one search store")
        for name in ("rounds", "search_seeds", "heldout_seeds", "population", "workers", "top_k", "max_turns",
                     "max_evaluations", "max_tokens", "race_eta"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        if not self.betas or any(not 0.0 <= b <= 1.0 for b in self.betas) or sorted(set(self.betas)) != self.betas:
            raise bad("betas", "must be distinct increasing values in [0, 1]")
        if self.gamma_per_mtok < 0:
            raise bad("gamma_per_mtok", "must be >= 0")
        if self.budget_usd is not None and self.budget_usd < 0:
            raise bad("budget_usd", "must be >= 0")
        if self.time_limit_min is not None and self.time_limit_min <= 0:
            raise bad("time_limit_min", "must be > 0")
        if self.objective not in OBJECTIVES:
            raise bad("objective", f"must be one of {', '.join(OBJECTIVES)}")
        if any(not isinstance(c, int) or c < 1 for c in self.race_stages) or sorted(set(self.race_stages)) != list(
                self.race_stages):
            raise bad("race_stages", "must be increasing seed counts >= 1")
        if self.race_z < 0:
            raise bad("race_z", "must be >= 0")
        if self.beta_policy not in ("reject", "flag"):
            raise bad("beta_policy", "must be 'reject' or 'flag'")
        if set(self.data) & set(self.heldout):
            raise bad("heldout", "must not share stores with the search data")

    @property
    def gamma(self) -> float:
        """Accuracy points per token."""
        return self.gamma_per_mtok / 1e6

    @property
    def limits(self) -> Limits:
        """The limits of one candidate's sandboxed worker (its whole evaluation)."""
        return Limits(cpu_s=max(1, int(self.cpu_seconds)), memory_bytes=self.memory_mb << 20,
                      wall_s=self.wall_seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DiscoverConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DiscoverConfigError(f"run.json: unknown setting(s) {', '.join(unknown)}")
        return cls(**data)


def build_explorer(config: DiscoverConfig) -> Explorer:
    if config.explorer == "local":
        from .explorers.local import LocalExplorer

        return LocalExplorer(seed=config.seed, population=config.population)
    model, price_in, price_out = DEFAULT_MODELS[config.explorer]
    pricing = Pricing(config.price_in if config.price_in is not None else price_in,
                      config.price_out if config.price_out is not None else price_out)
    kwargs = dict(model=config.model or model, pricing=pricing, base_url=config.base_url,
                  api_key_env=config.api_key_env, max_tokens=config.max_tokens, max_turns=config.max_turns,
                  max_evaluations=config.max_evaluations)
    if config.explorer == "anthropic":
        from .explorers.anthropic import AnthropicExplorer

        return AnthropicExplorer(**kwargs)
    from .explorers.openai import OpenAIExplorer

    return OpenAIExplorer(**kwargs)

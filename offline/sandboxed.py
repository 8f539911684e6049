"""Scoring model-written controllers: the artifact's code runs in a sandboxed worker, its episodes here.

Every controller that is not a built-in is an artifact, whose code may have been written by a
model. `autotts eval` runs it in a worker isolated by the kernel (`autotts.sandbox`), never in
this process: the worker gets only what the controller is shown and returns actions; the episode
machines, the stores, the gold answers and the scores stay here (`run_sandboxed`). Each process
keeps one worker per artifact source and starts a new one when a worker fails.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts.controllers.aggregators import Aggregator, parse_aggregator
from autotts.controllers.artifact import read_artifact
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.errors import ArtifactError, ControllerSpecError
from autotts.controllers.registry import parse_spec
from autotts.sandbox import Limits
from autotts.sandbox.remote import CandidateError, SandboxedClass, SandboxedController, run_lockstep

from .env import ReplayEnv
from .episode import EpisodeResult, episode_result
from .store import ReplayStore

__all__ = ["SandboxOptions", "artifact_spec", "run_sandboxed", "sandboxed_controller"]


@dataclass(frozen=True)
class SandboxOptions:
    """How artifact workers run: their limits, the per-step CPU limit, and whether a plain subprocess
    may stand in where no kernel sandbox works (`allow_unsandboxed`, the CLI's --no-sandbox)."""

    limits: Limits = field(default_factory=lambda: Limits(cpu_s=3600, wall_s=600.0))
    step_timeout_s: float = 5.0
    allow_unsandboxed: bool | None = None


_CLASSES: dict[tuple[int, str], SandboxedClass] = {}  # (process id, source hash) → its worker


def artifact_spec(spec: str) -> tuple[Path, dict[str, str]] | None:
    """(artifact path, parameters) of a spec naming an artifact; None for a built-in."""
    name, params = parse_spec(spec)
    if name in BUILTINS:
        return None
    if not Path(name).exists():
        raise ControllerSpecError(f"unknown controller {name!r}; available: {', '.join(sorted(BUILTINS))} "
                                  "(or a path to a controller artifact)")
    return Path(name), params


def _sandboxed_class(path: Path, source: str, options: SandboxOptions) -> SandboxedClass:
    key = (os.getpid(), hashlib.sha256(source.encode()).hexdigest())
    klass = _CLASSES.get(key)
    if klass is None or klass.failure is not None:
        try:
            klass = SandboxedClass.load(source, limits=options.limits, allow_unsandboxed=options.allow_unsandboxed)
        except CandidateError as exc:
            raise ArtifactError(f"{path}: controller code cannot be used ({exc.stage}): {exc}") from None
        _CLASSES[key] = klass
    return klass


def sandboxed_controller(spec: str, options: SandboxOptions | None = None) -> SandboxedController:
    """The controller an artifact spec names, created in this process's worker for that artifact."""
    found = artifact_spec(spec)
    if found is None:
        raise ControllerSpecError(f"{spec!r} is a built-in, not an artifact")
    path, params = found
    _, source = read_artifact(path)
    klass = _sandboxed_class(path, source, options or SandboxOptions())
    beta = params.pop("beta", None)
    return klass.new(beta, **params)


def close_workers() -> None:
    """End this process's artifact workers (they also end with the process)."""
    for key in [k for k in _CLASSES if k[0] == os.getpid()]:
        _CLASSES.pop(key).close()


def run_sandboxed(spec: str, store: ReplayStore, seeds: list[int], *, kappa_probe: int = 0,
                  token_budget: int | None = None, answer_mode: str = "exact", trace_seeds: tuple[int, ...] = (),
                  options: SandboxOptions | None = None, aggregator: Aggregator | None = None) -> list[EpisodeResult]:
    """Episodes (seed-major, then question) of the artifact `spec`, all in lockstep on its worker; they vote
    with `aggregator`, else the one the artifact's class names (as the same class would in process), else the
    store's."""
    options = options or SandboxOptions()
    controller = sandboxed_controller(spec, options)
    if aggregator is None and controller.owner.info.aggregator is not None:
        aggregator = parse_aggregator(controller.owner.info.aggregator)
    env = ReplayEnv(store, kappa_probe=kappa_probe, token_budget=token_budget, aggregator=aggregator)
    cases = [(seed, q) for seed in seeds for q in range(store.n_questions)]
    machines = [env.machine_for(q, seed, beta=controller.beta, record_trace=seed in trace_seeds, log_changes=True)
                for seed, q in cases]
    errors: list[Any] = run_lockstep([(m, controller) for m in machines], step_timeout_s=options.step_timeout_s)
    return [episode_result(m, store.golds[q], q, seed, error=error, answer_mode=answer_mode)
            for (seed, q), m, error in zip(cases, machines, errors, strict=True)]

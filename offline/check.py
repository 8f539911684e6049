"""`check_controller`: the contract every controller must meet, run before any scoring.

On small synthetic stores, driven by the episode machine through the replay driver: the β schedule
is monotone; every episode ends with an answer within the step limit and without illegal actions;
the controller is deterministic and keeps no state between episodes (the same episodes in another
order give the same actions). It cannot modify the observation: that is read-only by construction.
`check_sandboxed` runs the same checks on a controller whose code lives in a sandboxed worker.
"""

from __future__ import annotations

import random

from autotts.controllers.base import Controller, check_schedule, check_schedule_table
from autotts.controllers.errors import AutoTTSError, ControllerSpecError, EpisodeError
from autotts.sandbox.remote import SandboxedController, run_lockstep

from .env import ReplayEnv
from .store import ReplayStore

__all__ = ["check_controller", "check_sandboxed", "synthetic_store"]


def synthetic_store(seed: int = 0, questions: int = 4, branches: int = 64, segment_tokens: int = 100) -> ReplayStore:
    """A random store with noisy early probes that converge on each branch's final answer."""
    rng = random.Random(seed)
    records = []
    for qi in range(questions):
        rows = []
        for _ in range(branches):
            final = str(rng.choice([qi, qi, qi, qi + 1, qi + 2]))
            n = rng.randint(1, 12)
            probes = [final if k >= n // 2 else rng.choice(["ERR", final, str(rng.randint(0, 9))]) for k in range(n)]
            probes[-1] = final
            rows.append((probes, n * segment_tokens - rng.randint(0, segment_tokens - 1), final))
        records.append({"question": f"synthetic question {qi}", "gold_answer": str(qi), "branches": rows})
    return ReplayStore.from_records("synthetic", f"check{seed}", segment_tokens, records)


def _episode_log(controller: Controller, env: ReplayEnv, question: int, seed: int) -> list[str]:
    machine = env.machine_for(question, seed, beta=controller.beta)
    obs, log = machine.obs, []
    where = f"controller {controller.spec!r}, synthetic question {question}, seed {seed}"
    while not machine.done:
        try:
            batch = controller.step(obs)
        except Exception as exc:
            raise EpisodeError(f"{where}: step {obs.step} raised {type(exc).__name__}: {exc}") from exc
        log.append(repr(batch))
        try:
            machine.step(batch)
        except AutoTTSError as exc:
            raise EpisodeError(f"{where}: {exc}") from exc
    return log


def check_controller(controller: Controller, *, episodes: int = 6, max_steps: int = 2000) -> None:
    """Raise `EpisodeError` / `ControllerSpecError` naming the problem when `controller` breaks the contract."""
    check_schedule(type(controller))
    env = ReplayEnv(synthetic_store(), max_steps=max_steps)
    cases = [(i % env.store.n_questions, i) for i in range(episodes)]
    first = [_episode_log(controller, env, q, s) for q, s in cases]
    again = [_episode_log(controller, env, q, s) for q, s in reversed(cases)][::-1]
    _compare(controller.spec, cases, first, again)


def check_sandboxed(controller: SandboxedController, *, episodes: int = 6, max_steps: int = 2000,
                    step_timeout_s: float = 5.0) -> None:
    """`check_controller` for a controller living in a sandboxed worker: the same episodes, all in
    lockstep, twice in opposite orders; the schedule table its worker reported is checked here."""
    info = controller.owner.info
    if info.schedule_error:
        raise ControllerSpecError(f"{info.name}: schedule() failed: {info.schedule_error}")
    check_schedule_table(info.name, info.schedule or [], info.budget_knobs)
    env = ReplayEnv(synthetic_store(), max_steps=max_steps, record_trace=True)
    cases = [(i % env.store.n_questions, i) for i in range(episodes)]

    def traces(order: list[tuple[int, int]]) -> list[list[dict]]:
        machines = [env.machine_for(q, s, beta=controller.beta, log_changes=True) for q, s in order]
        errors = run_lockstep([(m, controller) for m in machines], step_timeout_s=step_timeout_s)
        for (q, s), error in zip(order, errors, strict=True):
            if error is not None:
                raise EpisodeError(f"controller {controller.spec!r}, synthetic question {q}, seed {s}: {error}")
        return [m.trace or [] for m in machines]

    _compare(controller.spec, cases, traces(cases), traces(cases[::-1])[::-1])


def _compare(spec: str, cases: list[tuple[int, int]], first: list, again: list) -> None:
    for (q, s), a, b in zip(cases, first, again, strict=True):
        if a != b:
            raise EpisodeError(f"controller {spec!r} is not deterministic or keeps state between "
                               f"episodes: synthetic question {q}, seed {s} differed on a second run")

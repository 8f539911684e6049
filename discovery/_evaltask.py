"""The evaluation run inside the sandbox: candidate source → contract check → β sweep on stores.

`prepare(payload)` runs while the child is still trusted: it loads the stores and imports what the
evaluation needs. The returned `run()` executes under the guard: it loads the candidate, checks its
schedule and contract (`check_controller`), then replays every (β, store, seed, question) episode
and returns plain JSON: per-cell counts, the first distinct errors, and the branch × depth grids
of a few wrong episodes. A per-episode CPU-time timer (ITIMER_PROF, so a busy machine does not
trip it) turns a controller stuck inside one step into that episode's error; a candidate whose
first episodes mostly fail is stopped early.
"""

from __future__ import annotations

import hashlib
import linecache
import signal
import sys
import time
import traceback
import types
from typing import Any

from autotts.controllers.base import Controller, check_schedule
from autotts.controllers.errors import AutoTTSError, EpisodeTimeout
from autotts.offline.check import check_controller
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode
from autotts.offline.store import load_store

from .grid import render_grid

__all__ = ["prepare"]

ORIGIN = "<candidate>"


def _on_alarm(signum, frame):
    raise EpisodeTimeout("the episode used more CPU time than the per-episode limit (a step that never returns?)")


def load_candidate(source: str):
    """Exec the candidate's module and return its single Controller subclass."""
    linecache.cache[ORIGIN] = (len(source), None, source.splitlines(True), ORIGIN)
    module = types.ModuleType("autotts_candidate_" + hashlib.sha1(source.encode()).hexdigest()[:10])
    module.__file__ = ORIGIN
    exec(compile(source, ORIGIN, "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Controller) and v.__module__ == module.__name__]
    if len(found) != 1:
        raise ValueError(f"the code must define exactly one Controller subclass, found {len(found)}")
    return found[0]


def _short_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    where = [ln.strip() for ln in lines if ORIGIN in ln]
    head = lines[-1] if lines else text
    return f"{head} (at {where[-1]})" if where else head


def prepare(payload: dict[str, Any]):
    stores = [load_store(p) for p in payload["stores"]]
    betas: list[float | None] = payload["betas"]
    seeds: list[int] = payload["seeds"]
    max_steps = int(payload.get("max_steps", 1000))
    step_timeout = float(payload.get("episode_timeout_s", 5.0))
    grid_beta = payload.get("grid_beta")
    max_grids = int(payload.get("max_grids", 2))
    fail_after = int(payload.get("fail_fast_episodes", 60))

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        out: dict[str, Any] = {"status": "ok", "cells": [], "grids": [], "errors": []}
        try:
            cls = load_candidate(payload["source"])
        except Exception as exc:
            out.update(status="load_error", errors=[f"{type(exc).__name__}: {exc}"],
                       trace=traceback.format_exc(limit=-4))
            return out
        out["class"] = {"name": cls.name, "entry": cls.__name__, "beta_range": cls.beta_range,
                        "default_beta": cls.default_beta, "budget_knobs": list(cls.budget_knobs)}
        if cls.beta_range is None or not cls.budget_knobs:
            out.update(status="no_beta", errors=[
                "a candidate must be beta-parameterised: set beta_range, default_beta, a schedule(beta) returning "
                "its knobs, and list the knobs that bound spending in budget_knobs"])
            return out
        try:
            out["schedule"] = check_schedule(cls, points=11)
        except AutoTTSError as exc:
            out.update(status="schedule_error", errors=[str(exc)])
            return out
        except Exception as exc:
            out.update(status="schedule_error", errors=[f"schedule() raised {type(exc).__name__}: {exc}"])
            return out
        sweep = betas
        old = signal.signal(signal.SIGPROF, _on_alarm)
        try:
            controllers = {}
            for beta in sweep:
                try:
                    controllers[beta] = cls(beta=beta)
                    signal.setitimer(signal.ITIMER_PROF, step_timeout * 10)
                    check_controller(controllers[beta], episodes=4, max_steps=max_steps)
                except (Exception, EpisodeTimeout) as exc:
                    out.update(status="check_failed",
                               errors=[f"contract check at beta={beta}: {_short_error(traceback.format_exc())}"
                                       if not isinstance(exc, AutoTTSError) else
                                       f"contract check at beta={beta}: {exc}"])
                    return out
                finally:
                    signal.setitimer(signal.ITIMER_PROF, 0)
            failed_total = episodes_total = 0
            for beta in sweep:
                controller = controllers[beta]
                for store in stores:
                    env = ReplayEnv(store, max_steps=max_steps)
                    cell = {"beta": beta, "store": store.path, "model": store.model, "dataset": store.dataset,
                            "episodes": 0, "correct": 0, "tokens": 0, "tokens_sq": 0, "failed": 0}
                    for seed in seeds:
                        for q in range(store.n_questions):
                            signal.setitimer(signal.ITIMER_PROF, step_timeout)
                            try:
                                res = run_episode(controller, env, q, seed)
                                error = res.error
                            except EpisodeTimeout as exc:  # fired just outside the controller's step
                                res, error = None, f"EpisodeTimeout: {exc}"
                            finally:
                                signal.setitimer(signal.ITIMER_PROF, 0)
                            cell["episodes"] += 1
                            cell["tokens"] += res.tokens if res else 0
                            cell["tokens_sq"] += res.tokens ** 2 if res else 0
                            cell["correct"] += bool(res and res.correct)
                            if error:
                                cell["failed"] += 1
                                msg = f"{store.name} q{q} seed {seed} beta={beta}: {_short_error(error)}"
                                if len(out["errors"]) < 5 and not any(msg.split(": ", 1)[1] in e
                                                                      for e in out["errors"]):
                                    out["errors"].append(msg)
                            elif (not res.correct and len(out["grids"]) < max_grids and beta == grid_beta
                                  and seed == seeds[0] and all(g["store"] != store.name for g in out["grids"])):
                                out["grids"].append({"store": store.name, "question": q, "seed": seed, "beta": beta,
                                                     "text": render_grid(env.obs, answer=res.answer,
                                                                         gold=store.golds[q], title=store.name)})
                    failed_total += cell["failed"]
                    episodes_total += cell["episodes"]
                    out["cells"].append(cell)
                    if episodes_total >= fail_after and failed_total > episodes_total / 2:
                        out["status"] = "failed_episodes"
                        out["errors"].insert(0, f"stopped early: {failed_total} of the first {episodes_total} "
                                                "episodes failed")
                        return out
            if failed_total:
                out["status"] = "failed_episodes"
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, old)
            out["wall_s"] = round(time.perf_counter() - start, 3)
        return out

    return run, [], []  # the stores are loaded already: the candidate may not read them (gold answers)

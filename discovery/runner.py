"""Where evaluation jobs run: threads of this process (`LocalRunner`) or a Ray cluster (`ray_eval`).

A job is one `evaluate_source` call on some seeds and stores of one candidate (`racing.Job`); the
candidate's code always runs in its own kernel-sandboxed worker, whichever runner starts the job.
Runners yield (job index, record body) as jobs finish, so a race can write each record the moment
it is final. A fault of ours (not the candidate's) becomes a ``crash`` body, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

from .evaluate import EvalConfig, evaluate_source
from .racing import Job

__all__ = ["LocalRunner", "crash_body", "evaluate_job"]

log = logging.getLogger(__name__)


def crash_body(exc: BaseException, job: Job) -> dict[str, Any]:
    return {"status": "crash", "errors": [f"evaluation failed: {type(exc).__name__}: {exc}"], "curve": [],
            "objective": None, "objective_se": None, "grids": [], "beta_check": [], "dominates": [], "class": None,
            "cells": [], "evidence": None, "seeds": list(job.seeds), "wall_s": 0.0}


def evaluate_job(job: Job, config: EvalConfig) -> dict[str, Any]:
    """`evaluate_source` of the job's candidate on the job's seeds and stores."""
    try:
        return evaluate_source(job.source, replace(config, seeds=job.seeds, stores=job.stores), check=job.check)
    except Exception as exc:  # a fault of ours, not the candidate's: record it, keep the loop going
        log.exception("evaluating a candidate failed")
        return crash_body(exc, job)


class LocalRunner:
    """Jobs in `slots` threads here; the work happens in their sandboxed worker processes."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)

    def run(self, jobs: list[Job], config: EvalConfig) -> Iterator[tuple[int, dict[str, Any]]]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.slots, len(jobs)))) as pool:
            futures = {pool.submit(evaluate_job, job, config): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def close(self) -> None:
        """Nothing to release."""

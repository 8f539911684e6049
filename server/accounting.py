"""Accounting: what a served request leaves behind, and what a feedback label adds later.

A finished job (any status) is counted in the metrics with its arm and controller labels: tokens by kind,
engine calls, branches, prunes, probes, rounds, latency. A successful one is remembered for
``POST /v1/feedback`` (server/feedback.py) and, when capture is on, handed to the traffic capture
(server/capture.py), which writes it off the event loop. A feedback label is counted per arm and becomes
the captured question's gold. Requests that fail before they are a job, and controller `none`'s
pass-through, are counted here too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .executor import EpisodeOutcome
from .feedback import CompletionRecord
from .metrics import GatewayMetrics
from .protocol import FeedbackRequest

if TYPE_CHECKING:
    from .gateway import Gateway
    from .jobs import Job

__all__ = ["label", "record_error", "record_job", "record_passthrough"]

_NO_JOB = {"controller": "-", "controller_version": "-", "arm": "-", "model": "-"}


def record_job(gateway: Gateway, job: Job, status: str, outcomes: list[EpisodeOutcome]) -> None:
    """Count the job (discarded attempts' tokens too); remember and capture it when it succeeded."""
    labels = job.labels
    ledgers = [b.ledger for b in [*job.backends, *job.discarded]]
    gateway.metrics.episode(
        labels, prompt=sum(x.prompt_tokens for x in ledgers), decode=sum(x.decode_tokens for x in ledgers),
        probe=sum(x.probe_tokens for x in ledgers), cached=sum(x.cached_tokens for x in ledgers),
        decode_calls=sum(x.decode_calls for x in ledgers), probe_calls=sum(x.probe_calls for x in ledgers),
        branches=sum(len(o.obs.branches) for o in outcomes), prunes=sum(o.prunes for o in outcomes),
        probes=sum(o.probes for o in outcomes), rounds=sum(o.rounds for o in outcomes))
    gateway.metrics.request(labels, status, time.perf_counter() - job.started,
                            sum(x.decode_tokens + x.probe_tokens for x in ledgers))
    if status == "200" and outcomes:
        gateway.feedback.add(job.rid, CompletionRecord(labels, job.controller.spec if job.selection.controller
                                                       else "none", outcomes[0].answer))
        if gateway.capture is not None:
            gateway.capture.submit(job, outcomes)  # never raises; rows are written off the event loop


def record_error(metrics: GatewayMetrics, status: int) -> None:
    """Count a request that failed before it became a job (bad input, unknown model, ...)."""
    metrics.requests.labels(**_NO_JOB, status=str(status)).inc()


def record_passthrough(metrics: GatewayMetrics, labels: dict[str, str], started: float,
                       usage: dict[str, Any] | None = None) -> None:
    """Count one request controller `none` passed to the engine (its tokens when the engine reported them)."""
    if usage is not None:
        for token_kind, key in (("prompt", "prompt_tokens"), ("decode", "completion_tokens")):
            metrics.tokens.labels(**labels, kind=token_kind).inc(int(usage.get(key) or 0))
    tokens = None if usage is None else int(usage.get("completion_tokens") or 0)
    metrics.request(labels, 200, time.perf_counter() - started, tokens)


def label(gateway: Gateway, body: FeedbackRequest) -> dict[str, Any]:
    """Label a recent completion correct or not (joined to its arm and controller); 404 unknown, 409 twice."""
    record = gateway.feedback.label(body.id, correct=body.correct, gold=body.gold)
    gateway.metrics.feedback.labels(**record.labels, correct=str(record.correct).lower()).inc()
    if gateway.capture is not None:  # a captured completion: its label becomes the question's gold
        gateway.capture.label(body.id, correct=record.correct, gold=body.gold, answer=record.answer)
    return {"id": body.id, "object": "feedback", "correct": record.correct, "arm": record.labels["arm"],
            "controller": record.spec}

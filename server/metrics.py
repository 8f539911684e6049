"""Prometheus metrics of the gateway, on a per-app registry (two apps in one process never collide).

Labels on every request metric: ``controller``, ``controller_version``, ``arm`` (the alias that chose
the controller, else how it was chosen), ``model``. Token counters are split by ``kind``: ``prompt``,
``decode``, ``probe``, ``cached`` (the engine's own counts, summed over every call of an episode).
Compare ``autotts_tokens_total{kind="cached"} / autotts_tokens_total{kind="prompt"}`` with the
engine's ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total``. A/B:
``autotts_feedback_total{correct="true|false"}`` counts labels per arm (accuracy = true / all) and
``autotts_fallbacks_total{reason}`` the episodes answered by the plain fallback.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

LABELS = ("controller", "controller_version", "arm", "model")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tokens = Counter("autotts_tokens", "Tokens of TTS episodes by kind (prompt, decode, probe, cached)",
                              (*LABELS, "kind"), registry=r)
        self.requests = Counter("autotts_requests", "Requests by final HTTP status", (*LABELS, "status"),
                                registry=r)
        self.branches = Counter("autotts_branches", "Branches opened", LABELS, registry=r)
        self.prunes = Counter("autotts_prunes", "Branches pruned", LABELS, registry=r)
        self.probes = Counter("autotts_probes", "Probe answers revealed", LABELS, registry=r)
        self.rounds = Counter("autotts_rounds", "Controller steps (rounds)", LABELS, registry=r)
        self.engine_calls = Counter("autotts_engine_calls", "Engine generate calls", (*LABELS, "kind"), registry=r)
        self.latency = Histogram("autotts_request_latency_seconds", "Wall time of a request", LABELS,
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.engine_errors = Counter("autotts_engine_errors", "Engine failures by kind (down, timeout, garbage, "
                                     "rejected, error)", ("engine", "kind"), registry=r)
        self.feedback = Counter("autotts_feedback", "Correctness labels from POST /v1/feedback",
                                (*LABELS, "correct"), registry=r)
        self.fallbacks = Counter("autotts_fallbacks", "Episodes answered by the plain fallback, by reason "
                                 "(controller_error, no_answer)", (*LABELS, "reason"), registry=r)
        self.in_flight = Gauge("autotts_requests_in_flight", "Episodes running now", registry=r)

    def episode(self, labels: dict[str, str], *, prompt: int, decode: int, probe: int, cached: int,
                decode_calls: int, probe_calls: int, branches: int, prunes: int, probes: int, rounds: int) -> None:
        for kind, value in (("prompt", prompt), ("decode", decode), ("probe", probe), ("cached", cached)):
            self.tokens.labels(**labels, kind=kind).inc(value)
        self.engine_calls.labels(**labels, kind="decode").inc(decode_calls)
        self.engine_calls.labels(**labels, kind="probe").inc(probe_calls)
        self.branches.labels(**labels).inc(branches)
        self.prunes.labels(**labels).inc(prunes)
        self.probes.labels(**labels).inc(probes)
        self.rounds.labels(**labels).inc(rounds)

    def request(self, labels: dict[str, str], status: int, seconds: float) -> None:
        self.requests.labels(**labels, status=str(status)).inc()
        self.latency.labels(**labels).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

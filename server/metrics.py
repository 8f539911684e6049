"""Prometheus metrics of the gateway, on a per-app registry (two apps in one process never collide).

Labels on every request metric: ``controller``, ``controller_version``, ``arm`` (the alias that chose
the controller, else how it was chosen), ``model``. Token counters are split by ``kind``: ``prompt``,
``decode``, ``probe``, ``cached`` (the engine's own counts, summed over every call of an episode).
Compare ``autotts_tokens_total{kind="cached"} / autotts_tokens_total{kind="prompt"}`` with the
engine's ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total``. A/B:
``autotts_feedback_total{correct="true|false"}`` counts labels per arm (accuracy = true / all) and
``autotts_fallbacks_total{reason}`` the episodes answered by the plain fallback. Engine replicas
(several ``engine_urls``): ``autotts_engine_replica_{healthy,in_flight,requests_total,failures_total}{replica}``
read from the pool at scrape time, and ``autotts_engine_retries_total{replica}`` (requests moved off it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]

LABELS = ("controller", "controller_version", "arm", "model")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKEN_BUCKETS = tuple(2 ** k for k in range(5, 21))  # 32 … 1M completion tokens a request


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
        self.request_tokens = Histogram("autotts_request_completion_tokens", "Completion tokens (decode + probe) "
                                        "of a request", LABELS, buckets=_TOKEN_BUCKETS, registry=r)
        # with the histogram's _sum and _count this gives each arm's exact variance of tokens per request,
        # which `autotts ab report` needs to say whether a token difference is significant (summed over replicas)
        self.request_tokens_squares = Counter("autotts_request_completion_tokens_squares", "Sum over requests of "
                                              "the squared completion tokens of each", LABELS, registry=r)
        self.engine_errors = Counter("autotts_engine_errors", "Engine failures by kind (down, timeout, garbage, "
                                     "rejected, error)", ("engine", "kind"), registry=r)
        self.feedback = Counter("autotts_feedback", "Correctness labels from POST /v1/feedback",
                                (*LABELS, "correct"), registry=r)
        self.fallbacks = Counter("autotts_fallbacks", "Episodes answered by the plain fallback, by reason "
                                 "(controller_error, no_answer)", (*LABELS, "reason"), registry=r)
        self.in_flight = Gauge("autotts_requests_in_flight", "Episodes running now", registry=r)
        self.captured = Counter("autotts_captured", "Episodes written to the traffic capture (docs/capture.md)",
                                registry=r)
        self.capture_errors = Counter("autotts_capture_errors", "Captured episodes or labels lost to an error "
                                      "or a full capture queue (the requests were served)", registry=r)
        self.engine_retries = Counter("autotts_engine_retries", "Requests run again on another engine replica "
                                      "after theirs went down, by the replica that failed", ("replica",), registry=r)
        self._replicas: _ReplicaCollector | None = None
        self.controller_reloads = Counter("autotts_controller_reloads", "Controller reloads (admin endpoint or "
                                          "file watch) by result: ok, error (the old set kept serving)",
                                          ("result",), registry=r)

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

    def request(self, labels: dict[str, str], status: int, seconds: float, completion_tokens: int | None) -> None:
        """Count a finished request; its completion tokens when known (a passthrough without usage: not)."""
        self.requests.labels(**labels, status=str(status)).inc()
        self.latency.labels(**labels).observe(seconds)
        if completion_tokens is None:
            return
        self.request_tokens.labels(**labels).observe(completion_tokens)
        self.request_tokens_squares.labels(**labels).inc(completion_tokens * completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def watch_replicas(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        """Export the engine replicas' state (`ReplicaPool.status`), read at every scrape."""
        if self._replicas is None:
            self._replicas = _ReplicaCollector(status)
            self.registry.register(self._replicas)
        self._replicas.status = status


class _ReplicaCollector:
    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self.status = status

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        families = {
            "healthy": GaugeMetricFamily("autotts_engine_replica_healthy", "1 while the engine replica takes new "
                                         "requests", labels=("replica",)),
            "in_flight": GaugeMetricFamily("autotts_engine_replica_in_flight", "Requests pinned to the replica "
                                           "now", labels=("replica",)),
            "requests": CounterMetricFamily("autotts_engine_replica_requests", "Requests pinned to the replica",
                                            labels=("replica",)),
            "failures": CounterMetricFamily("autotts_engine_replica_failures", "Times the replica was taken out "
                                            "after a failure", labels=("replica",))}
        for replica in self.status():
            for key, family in families.items():
                family.add_metric((replica["url"],), float(replica[key]))
        yield from families.values()

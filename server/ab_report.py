"""`autotts ab report`: per-arm requests, accuracy, tokens and latency from the gateway's metrics.

Reads either a gateway's ``/metrics`` page (Prometheus text format, one replica) or a Prometheus server
(any other URL: queried through ``/api/v1/query`` with ``sum by (arm, …)``, so every replica counts).
Accuracy is ``autotts_feedback_total{correct="true"}`` over all labels of the arm, with a Wilson 95%
interval; the two arms with the most labels are compared with a two-sided two-proportion z-test, and
their completion tokens per request with Welch's t-test (mean and exact variance per arm from
``autotts_request_completion_tokens`` and its ``_squares`` counter).
Counters are totals since each gateway started: compare arms over the same window.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from autotts.offline.errors import ReportError

from .ab_stats import t_quantile_975, t_two_sided_p

__all__ = ["ArmStats", "Comparison", "TokenComparison", "compare", "compare_tokens", "fetch_samples",
           "format_report", "summarize", "wilson"]

Z95 = 1.959963984540054
# (sample name, the label kept besides `arm`)
_QUERIES = (("autotts_requests_total", "status"), ("autotts_tokens_total", "kind"),
            ("autotts_feedback_total", "correct"), ("autotts_fallbacks_total", "reason"),
            ("autotts_request_latency_seconds_sum", None), ("autotts_request_latency_seconds_count", None))
_TOKEN_SERIES = {"autotts_request_completion_tokens_sum": "token_sum",  # sample name -> ArmStats field
                 "autotts_request_completion_tokens_count": "token_requests",
                 "autotts_request_completion_tokens_squares_total": "token_squares"}
_QUERIES += tuple((name, None) for name in _TOKEN_SERIES)
Sample = tuple[str, dict[str, str], float]


@dataclass
class ArmStats:
    arm: str
    requests: float = 0.0
    ok: float = 0.0
    tokens: float = 0.0  # completion tokens (decode + probe)
    latency_sum: float = 0.0
    latency_count: float = 0.0
    correct: float = 0.0
    labelled: float = 0.0
    fallbacks: float = 0.0
    token_requests: float = 0.0  # requests whose completion tokens are known, their sum and sum of squares
    token_sum: float = 0.0
    token_squares: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def tokens_per_request(self) -> float | None:
        if self.token_requests:
            return self.token_sum / self.token_requests
        return self.tokens / self.latency_count if self.latency_count else None  # a gateway before the histogram

    @property
    def token_variance(self) -> float | None:
        """Sample variance of completion tokens per request (None below two requests)."""
        n = self.token_requests
        if n < 2:
            return None
        return max(0.0, (self.token_squares - self.token_sum * self.token_sum / n) / (n - 1))

    @property
    def latency(self) -> float | None:
        return self.latency_sum / self.latency_count if self.latency_count else None


@dataclass
class Comparison:
    a: str
    b: str
    difference: float
    z: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


@dataclass
class TokenComparison:
    """Welch's t-test of completion tokens per request, arm a minus arm b."""

    a: str
    b: str
    mean_a: float
    mean_b: float
    difference: float
    ci95: tuple[float, float]
    t: float
    df: float
    p_value: float

    @property
    def relative(self) -> float:
        return self.difference / self.mean_b if self.mean_b else math.inf

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0, 1 when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def fetch_samples(url: str, timeout: float = 10.0) -> list[Sample]:
    """(name, labels, value) of the autotts series at `url` (a /metrics page or a Prometheus server)."""
    path = urllib.parse.urlparse(url).path.rstrip("/")
    try:
        if path.endswith("/metrics"):
            from prometheus_client.parser import text_string_to_metric_families

            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read().decode()
            return [(s.name, dict(s.labels), float(s.value)) for family in text_string_to_metric_families(text)
                    for s in family.samples]
        base = url.rstrip("/")
        base = base[: -len("/api/v1/query")] if base.endswith("/api/v1/query") else base
        samples: list[Sample] = []
        for name, label in _QUERIES:
            by = "arm" if label is None else f"arm, {label}"
            query = urllib.parse.urlencode({"query": f"sum by ({by}) ({name})"})
            with urllib.request.urlopen(f"{base}/api/v1/query?{query}", timeout=timeout) as response:
                data = json.loads(response.read())
            if data.get("status") != "success":
                raise ReportError(f"{url}: Prometheus query failed: {data.get('error', data)}")
            samples += [(name, dict(r["metric"]), float(r["value"][1])) for r in data["data"]["result"]]
        return samples
    except ReportError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ReportError(f"{url}: cannot read metrics: {exc}") from None


def summarize(samples: list[Sample], arms: list[str] | None = None) -> list[ArmStats]:
    """Per-arm totals (all controllers, versions and models of the arm summed); `arms` keeps and orders."""
    stats: dict[str, ArmStats] = defaultdict(lambda: ArmStats(""))
    for name, labels, value in samples:
        arm = labels.get("arm")
        if not arm or arm == "-" or (arms and arm not in arms):
            continue
        s = stats[arm]
        s.arm = arm
        if name == "autotts_requests_total":
            s.requests += value
            s.ok += value if labels.get("status") == "200" else 0.0
        elif name == "autotts_tokens_total" and labels.get("kind") in ("decode", "probe"):
            s.tokens += value
        elif name == "autotts_feedback_total":
            s.labelled += value
            s.correct += value if labels.get("correct") == "true" else 0.0
        elif name == "autotts_fallbacks_total":
            s.fallbacks += value
        elif name == "autotts_request_latency_seconds_sum":
            s.latency_sum += value
        elif name == "autotts_request_latency_seconds_count":
            s.latency_count += value
        elif name in _TOKEN_SERIES:
            setattr(s, _TOKEN_SERIES[name], getattr(s, _TOKEN_SERIES[name]) + value)
    order = arms or sorted(stats)
    return [stats[a] for a in order if a in stats and stats[a].requests + stats[a].labelled > 0]


def _pair(stats: list[ArmStats]) -> tuple[ArmStats, ArmStats] | None:
    """The two arms compared: most feedback labels first, then most requests (stable for ties)."""
    ranked = sorted(stats, key=lambda s: (-s.labelled, -s.requests))
    return (ranked[0], ranked[1]) if len(ranked) >= 2 else None


def compare(stats: list[ArmStats]) -> Comparison | None:
    """Two-sided two-proportion z-test between the two arms with the most labels (None if < 2 labelled)."""
    pair = _pair(stats)
    if pair is None or not pair[1].labelled:
        return None
    a, b = pair
    pa, pb = a.correct / a.labelled, b.correct / b.labelled
    pooled = (a.correct + b.correct) / (a.labelled + b.labelled)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.labelled + 1 / b.labelled))
    z = (pa - pb) / se if se > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2)) if se > 0 else 1.0
    return Comparison(a.arm, b.arm, pa - pb, z, p_value)


def compare_tokens(stats: list[ArmStats]) -> TokenComparison | None:
    """Welch's two-sided t-test of tokens per request between the arms `compare` takes (None below 2 each)."""
    pair = _pair(stats)
    if pair is None:
        return None
    a, b = pair
    va, vb = a.token_variance, b.token_variance
    if va is None or vb is None:
        return None
    ma, mb = a.tokens_per_request, b.tokens_per_request  # from the histogram: both have >= 2 requests
    qa, qb = va / a.token_requests, vb / b.token_requests
    se = math.sqrt(qa + qb)
    if se == 0:
        same = ma == mb
        return TokenComparison(a.arm, b.arm, ma, mb, ma - mb, (ma - mb, ma - mb), 0.0 if same else math.inf,
                               math.inf, 1.0 if same else 0.0)
    df = (qa + qb) ** 2 / (qa * qa / (a.token_requests - 1) + qb * qb / (b.token_requests - 1))
    t = (ma - mb) / se
    half = t_quantile_975(df) * se
    return TokenComparison(a.arm, b.arm, ma, mb, ma - mb, (ma - mb - half, ma - mb + half), t, df,
                           t_two_sided_p(t, df))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(stats: list[ArmStats], comparison: Comparison | None,
                  tokens: TokenComparison | None = None) -> str:
    if not stats:
        return "no A/B arms in these metrics (is `arms:` configured, and have requests been served?)"
    rows = [("arm", "requests", "ok", "fallbacks", "labelled", "accuracy", "95% CI", "tokens/req", "sd",
             "latency_s")]
    for s in stats:
        lo, hi = wilson(s.correct, s.labelled)
        rows.append((s.arm, f"{s.requests:.0f}", f"{s.ok:.0f}", f"{s.fallbacks:.0f}", f"{s.labelled:.0f}",
                     _fmt(s.accuracy, ".3f"), f"[{lo:.3f}, {hi:.3f}]" if s.labelled else "-",
                     _fmt(s.tokens_per_request, ".0f"), _fmt(_sqrt(s.token_variance), ".0f"), _fmt(s.latency, ".3f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    if comparison is None:
        lines.append("difference: needs feedback labels on at least two arms")
    else:
        c = comparison
        lines.append(f"{c.a} - {c.b}: accuracy difference {c.difference:+.3f}, z = {c.z:.2f}, "
                     f"p = {c.p_value:.3g} (two-proportion z-test); significant at 5%: "
                     f"{'yes' if c.significant else 'no'}")
    if tokens is not None:
        t = tokens
        lines.append(f"{t.a} - {t.b}: tokens/request difference {t.difference:+.0f} ({t.relative:+.1%}), 95% CI "
                     f"[{t.ci95[0]:+.0f}, {t.ci95[1]:+.0f}], t = {t.t:.2f}, df = {t.df:.0f}, p = {t.p_value:.3g} "
                     f"(Welch's t-test); significant at 5%: {'yes' if t.significant else 'no'}")
    return "\n".join(lines)


def report_dict(stats: list[ArmStats], comparison: Comparison | None,
                tokens: TokenComparison | None = None) -> dict[str, Any]:
    arms = []
    for s in stats:
        lo, hi = wilson(s.correct, s.labelled)
        arms.append({"arm": s.arm, "requests": s.requests, "ok": s.ok, "fallbacks": s.fallbacks,
                     "labelled": s.labelled, "correct": s.correct, "accuracy": s.accuracy,
                     "accuracy_ci95": [lo, hi] if s.labelled else None,
                     "tokens_per_request": s.tokens_per_request, "tokens_sd": _sqrt(s.token_variance),
                     "latency_s": s.latency})
    comp = None if comparison is None else {**comparison.__dict__, "significant": comparison.significant}
    tok = None if tokens is None else {k: _finite(v) for k, v in {
        **tokens.__dict__, "ci95": list(tokens.ci95), "relative": tokens.relative}.items()}
    if tok is not None:
        tok["significant"] = tokens.significant
    return {"arms": arms, "comparison": comp, "tokens_comparison": tok}


def _finite(value: Any) -> Any:
    """JSON has no infinity: an infinite t or df (arms without spread) is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _sqrt(value: float | None) -> float | None:
    return None if value is None else math.sqrt(value)

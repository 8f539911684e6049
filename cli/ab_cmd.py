"""`autotts ab report`: compare the gateway's A/B arms from its metrics (see server/ab_report.py)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ab", help="A/B arms of the serving gateway: report per-arm accuracy, tokens, latency")
    ab = p.add_subparsers(dest="ab_command", metavar="ACTION", required=True)
    r = ab.add_parser(
        "report", help="per-arm requests, accuracy (Wilson 95%% CI), tokens/request, latency, significance",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the gateway's /metrics page (one replica) or a Prometheus server (all replicas) and "
                    "print one row per arm; the two arms with the most feedback labels are compared: accuracy "
                    "by a two-proportion z-test, completion tokens per request by Welch's t-test.",
        epilog="examples:\n  autotts ab report --metrics-url http://127.0.0.1:8000/metrics\n"
               "  autotts ab report --metrics-url http://prometheus:9090 --arms control,cmc")
    r.add_argument("--metrics-url", required=True, metavar="URL",
                   help="a gateway's .../metrics, or a Prometheus server's base URL")
    r.add_argument("--arms", metavar="A,B", help="only these arms, in this order (default: all)")
    r.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r.add_argument("--timeout", type=float, default=10.0, metavar="S", help="HTTP timeout (default 10 s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.server.ab_report import compare, compare_tokens, fetch_samples, format_report, report_dict, summarize

    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    stats = summarize(fetch_samples(args.metrics_url, timeout=args.timeout), arms)
    comparison, tokens = compare(stats), compare_tokens(stats)
    print(json.dumps(report_dict(stats, comparison, tokens), indent=2) if args.json
          else format_report(stats, comparison, tokens))
    return 0

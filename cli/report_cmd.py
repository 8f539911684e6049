"""`autotts report`: turn an evaluation's results.csv (+ episodes, traces) into one HTML page."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write an HTML report (scaling curves, Pareto frontier, table, trace grid)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build one self-contained HTML file from the tables `autotts eval` wrote: accuracy-tokens "
                    "curves per model and dataset, the Pareto frontier, tokens saved against sc at matched "
                    "accuracy, a sortable table and the branch x depth grid of a traced episode.",
        epilog="example:\n"
               "  autotts eval --controller sc --controller cmc:beta=0.2 --controller cmc:beta=0.8 --seeds 20 \\\n"
               "      --out r.csv --episodes-out ep.parquet --traces-out traces/\n"
               "  autotts report r.csv --episodes ep.parquet --traces traces/ --out report.html")
    p.add_argument("results", metavar="RESULTS_CSV", help="results table written by autotts eval --out")
    p.add_argument("--episodes", metavar="PARQUET", help="episodes from --episodes-out: adds 95%% intervals over seeds")
    p.add_argument("--traces", metavar="DIR", help="traces from --traces-out: adds the branch x depth grid")
    p.add_argument("--grid-limit", type=int, default=4, metavar="N",
                   help="grids for at most N controllers (default 4)")
    p.add_argument("--grid-episode", metavar="MODEL/DATASET/QUESTION/SEED",
                   help="the traced episode to draw (default: the one traced for most controllers, with the most "
                        "prunes and distinct answers)")
    p.add_argument("--title", help="page title")
    p.add_argument("--out", required=True, metavar="HTML", help="the report file to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.offline.report import build_report

    if args.grid_limit < 1:
        raise SystemExit("autotts report: error: --grid-limit must be >= 1")
    out = build_report(args.results, args.out, episodes=args.episodes, traces=args.traces,
                       grid_limit=args.grid_limit, grid_episode=args.grid_episode, title=args.title)
    print(f"report -> {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0

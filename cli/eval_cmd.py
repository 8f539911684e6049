"""`autotts eval`: score controllers on replay stores, write results.csv (+ episodes, traces)."""

from __future__ import annotations

import argparse
import sys
import time

from autotts.controllers.normalize import MODES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate controllers on replay stores",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay controllers over recorded trajectories: every (controller, store) cell runs "
                    "every question under --seeds shuffle seeds.",
        epilog="examples:\n"
               "  autotts eval --controller sc --controller cmc:beta=0.5 --out results.csv\n"
               "  autotts eval --data ../shared/replay --controller asc:threshold=0.9,n=32 --out r.csv\n"
               "  autotts eval --data stores/ --controller my_artifact/ --episodes-out ep.parquet --out r.csv\n"
               "      (artifact code runs in a kernel sandbox; --in-process for code you wrote yourself)\n"
               "  autotts eval --data CAPTURE_DIR --controller cmc:beta=0.5 --out r.csv   # captured traffic\n"
               "  autotts eval --controller cmc:beta=0.5 --ray --out r.csv          # local Ray instance\n"
               "  autotts eval --controller cmc:beta=0.5 --ray auto --out r.csv     # existing Ray cluster")
    p.add_argument("--data", nargs="+", action="extend", metavar="PATH",
                   help="replay stores: Parquet files, public-format .json/.json.gz files, or directories of "
                        "them, including a gateway capture directory (docs/capture.md) (default: the stores "
                        "bundled with autotts)")
    p.add_argument("--controller", dest="controllers", action="append", required=True, metavar="SPEC",
                   help="built-in name with optional parameters (cmc:beta=0.5, asc:threshold=0.9,n=32) or a "
                        "path to a controller artifact; repeat for several")
    p.add_argument("--seeds", type=int, default=100, help="shuffle seeds 0..N-1 per question (default 100)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Ray instead of the local process pool: no ADDRESS starts a local Ray instance "
                        "(--workers CPUs), 'auto' joins this machine's cluster, ray://HOST:PORT uses Ray Client; "
                        "same results either way (needs autotts[ray])")
    p.add_argument("--out", required=True, metavar="CSV", help="results table, one row per (controller, store)")
    p.add_argument("--episodes-out", metavar="PARQUET", help="also write one row per episode")
    p.add_argument("--traces-out", metavar="DIR", help="also write execution traces (JSONL per cell)")
    p.add_argument("--trace-seeds", type=int, nargs="+", default=[0], metavar="SEED",
                   help="seeds whose episodes are traced with --traces-out (default: 0)")
    p.add_argument("--kappa-probe", type=int, default=0, help="extra tokens charged per revealed probe (default 0)")
    p.add_argument("--token-budget", type=int, default=None, help="per-episode token budget (default: none)")
    p.add_argument("--answer-mode", choices=MODES, default="exact",
                   help="correctness: exact strings (paper parity) or math equivalence (default exact)")
    p.add_argument("--aggregator", default=None, metavar="SPEC",
                   help="how episodes vote: exact, normalized, math[:tolerance=X], semantic[:threshold=X] (local "
                        "embedding model). Default: the controller's own, else what each store records (autotts "
                        "collect records the live gateway's: math for boxed answers), else exact (the replay "
                        "table, the bundled stores); see docs/serving.md")
    p.add_argument("--extractor", default=None, metavar="SPEC",
                   help="check that every store's answers were recorded with this extractor (autotts collect "
                        "--extractor; stores that do not say are boxed)")
    p.add_argument("--in-process", action="store_true",
                   help="run artifact code in this process, unsandboxed (faster; only for code you wrote "
                        "yourself: artifact code can read everything this process can, gold answers included)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="where no kernel sandbox works here, run artifact workers as plain subprocesses "
                        "(separate memory, but files and network are open to them; see docs/security.md)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.offline.evaluate import EvalOptions, bundled_data_dir, evaluate, resolve_stores
    from autotts.offline.results import write_episodes, write_results_csv, write_traces
    from autotts.offline.sandboxed import SandboxOptions

    if args.seeds < 1:
        raise SystemExit("autotts eval: error: --seeds must be >= 1")
    stores = resolve_stores(args.data or [bundled_data_dir()])
    for store in stores:
        if store.meta.get("source") == "capture":  # captured traffic: say what will count toward accuracy
            m = store.meta
            print(f"capture {store.path}: {store.n_questions} questions, {m['questions_with_gold']} with a gold "
                  f"(only those count toward accuracy), {m['branch_rows']} branches ({m['truncated_branches']} "
                  f"truncated), {m['min_branches']}..{m['max_branches']} per question", file=sys.stderr)
    opts = EvalOptions(seeds=args.seeds, kappa_probe=args.kappa_probe, token_budget=args.token_budget,
                       answer_mode=args.answer_mode, aggregator=args.aggregator,
                       extractor=args.extractor,
                       trace_seeds=tuple(args.trace_seeds) if args.traces_out else (), in_process=args.in_process,
                       sandbox=SandboxOptions(allow_unsandboxed=True if args.no_sandbox else None))
    start = time.perf_counter()
    cells = evaluate(args.controllers, stores, opts, workers=args.workers, progress=not args.no_progress,
                     ray_address=args.ray)
    write_results_csv(args.out, cells)
    if args.episodes_out:
        write_episodes(args.episodes_out, cells)
    if args.traces_out:
        write_traces(args.traces_out, cells)
    _print_table(cells)
    print(f"{len(cells)} cells, {sum(len(c.episodes) for c in cells)} episodes in "
          f"{time.perf_counter() - start:.1f}s -> {args.out}", file=sys.stderr)
    return 0


def _print_table(cells) -> None:
    print(f"{'controller':<22} {'model':<12} {'dataset':<10} {'acc %':>7} {'tokens':>12} {'failed':>6}")
    for cell in cells:
        row = cell.row()
        name = cell.spec if len(cell.spec) <= 22 else cell.controller[:22]
        print(f"{name:<22} {row['model']:<12} {row['dataset']:<10} {row['accuracy_pct']:>7.2f} "
              f"{row['avg_tokens']:>12.0f} {row['failed']:>6}")

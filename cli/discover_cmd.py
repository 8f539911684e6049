"""`autotts discover`: the explorer loop that writes, evaluates and refines controllers."""

from __future__ import annotations

import argparse
import sys
import time


def _betas(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--betas must be comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "discover", help="discover controllers: an explorer proposes code, the sandbox scores it, artifacts result",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each round the explorer sees the history (code, beta curves, failure grids; search stores "
                    "only) and proposes controllers; each is evaluated in a sandbox over the beta sweep. The best "
                    "are scored on the held-out stores and written as artifacts (RUN_DIR/artifacts/) with a report.",
        epilog="examples:\n"
               "  autotts discover --explorer local --data ../shared/replay/*/aime24.json.gz \\\n"
               "      --heldout ../shared/replay/*/aime25.json.gz --rounds 12 --out runs/local\n"
               "  ANTHROPIC_API_KEY=... autotts discover --explorer anthropic --data DIR --rounds 5 --budget-usd 5 "
               "--out runs/claude\n"
               "  autotts discover --explorer openai --base-url http://localhost:8000/v1 --model Qwen/Qwen3-8B "
               "--price-in 0 --price-out 0 --data DIR --rounds 5 --out runs/vllm\n"
               "  autotts discover --explorer local --data DIR --objective cmc-savings --time-limit 15 --ray "
               "--out runs/ray\n"
               "  autotts discover --resume --out runs/local      # continue a killed or finished run")
    p.add_argument("--explorer", choices=("local", "anthropic", "openai"), help="who proposes controllers")
    p.add_argument("--data", nargs="+", metavar="STORE",
                   help="search stores (files or directories; a gateway capture directory works too, "
                        "docs/capture.md)")
    p.add_argument("--heldout", nargs="+", default=[], metavar="STORE",
                   help="held-out stores: scored for the report, never shown to the explorer")
    p.add_argument("--rounds", type=int, help="rounds to run (default 10; on --resume, raises the total)")
    p.add_argument("--betas", type=_betas, help="beta sweep (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--gamma", type=float, help="objective acc%% - gamma * tokens, gamma in accuracy points per 1M "
                                               "tokens per question (default 2)")
    p.add_argument("--objective", choices=("gamma", "cmc-savings"),
                   help="what a candidate scores: gamma (default: mean over its beta sweep of acc%% - gamma*tokens) or "
                        "cmc-savings (tokens saved against the cmc sweep at matched accuracy: half the mean saving, "
                        "half the worst)")
    p.add_argument("--race-stages", type=_ints, metavar="N,N",
                   help="racing: seeds after each stage before the full --search-seeds (default 2,5); every "
                        "candidate meets the first stage, the best 1/--race-eta go on")
    p.add_argument("--no-race", dest="race_stages", action="store_const", const=[],
                   help="no racing: every candidate gets the full sweep")
    p.add_argument("--race-eta", type=int, help="each racing stage keeps the best 1/ETA (default 3)")
    p.add_argument("--race-z", type=float, help="... whose objective + Z standard errors reaches the best complete "
                                                "candidate's on the same seeds (default 1)")
    p.add_argument("--ray", dest="ray_address", nargs="?", const="", metavar="ADDRESS",
                   help="evaluate candidates as Ray tasks, each behind the same sandbox on its node: a local "
                        "instance without ADDRESS, else 'auto' or ray://HOST:PORT")
    p.add_argument("--budget-usd", type=float, help="stop when the LLM spend reaches this many dollars")
    p.add_argument("--time-limit", type=float, metavar="MIN", help="start no new round after MIN minutes")
    p.add_argument("--seed", type=int, help="seed of the local explorer (default 0)")
    p.add_argument("--search-seeds", type=int, help="shuffle seeds per search store (default 10)")
    p.add_argument("--heldout-seeds", type=int, help="shuffle seeds per held-out store (default 30)")
    p.add_argument("--population", type=int, help="candidates per round of the local explorer (default 4)")
    p.add_argument("--workers", type=int, help="candidates evaluated at once (default 2)")
    p.add_argument("--top-k", type=int, help="artifacts to write, best by objective (default 3)")
    p.add_argument("--beta-policy", choices=("reject", "flag"),
                   help="candidates whose tokens fall as beta grows: reject (default) or only flag")
    p.add_argument("--model", help="LLM model name (default per explorer)")
    p.add_argument("--base-url", help="API base URL (an OpenAI-compatible server, a proxy, a local vLLM)")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key "
                                                        "(default ANTHROPIC_API_KEY / OPENAI_API_KEY)")
    p.add_argument("--price-in", type=float, metavar="USD", help="dollars per 1M input tokens")
    p.add_argument("--price-out", type=float, metavar="USD", help="dollars per 1M output tokens")
    p.add_argument("--max-turns", type=int, help="LLM calls per round (default 12)")
    p.add_argument("--max-evaluations", type=int, help="evaluations per LLM round (default 4)")
    p.add_argument("--cpu-seconds", type=float, help="sandbox CPU-time limit per evaluation (default 600)")
    p.add_argument("--memory-mb", type=int, help="sandbox memory limit (default 3072)")
    p.add_argument("--wall-seconds", type=float, help="sandbox wall-clock limit per evaluation (default 900)")
    p.add_argument("--no-sandbox", dest="allow_unsandboxed", action="store_const", const=True,
                   help="where no kernel sandbox works here, evaluate candidates in plain subprocesses instead of "
                        "refusing (their memory stays apart from the scores, but files and network are open to "
                        "them: docs/security.md)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (history, artifacts, report)")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


_FIELDS = {"explorer": "explorer", "data": "data", "heldout": "heldout", "rounds": "rounds", "betas": "betas",
           "gamma": "gamma_per_mtok", "budget_usd": "budget_usd", "time_limit": "time_limit_min", "seed": "seed",
           "search_seeds": "search_seeds", "heldout_seeds": "heldout_seeds", "population": "population",
           "workers": "workers", "top_k": "top_k", "beta_policy": "beta_policy", "model": "model",
           "base_url": "base_url", "api_key_env": "api_key_env", "price_in": "price_in", "price_out": "price_out",
           "max_turns": "max_turns", "max_evaluations": "max_evaluations", "cpu_seconds": "cpu_seconds",
           "memory_mb": "memory_mb", "wall_seconds": "wall_seconds", "allow_unsandboxed": "allow_unsandboxed",
           "objective": "objective", "race_stages": "race_stages", "race_eta": "race_eta", "race_z": "race_z",
           "ray_address": "ray_address"}
_RESUMABLE = {"rounds", "time_limit_min", "budget_usd", "workers", "top_k", "ray_address"}


def run(args: argparse.Namespace) -> int:
    from autotts.discovery.config import DiscoverConfig, DiscoverConfigError
    from autotts.discovery.loop import run_discovery

    given = {_FIELDS[k]: v for k, v in vars(args).items()
             if k in _FIELDS and v is not None and (v != [] or k == "race_stages")}
    start = time.perf_counter()
    if args.resume:
        frozen = sorted(set(given) - _RESUMABLE)
        if frozen:
            raise DiscoverConfigError(f"discover --resume: {', '.join(frozen)} cannot change on resume (only "
                                      f"{', '.join(sorted(_RESUMABLE))}); the run's own settings are in run.json")
        report = run_discovery(None, args.out, resume=True, progress=not args.no_progress, overrides=given)
    else:
        if "explorer" not in given or "data" not in given:
            raise SystemExit("autotts discover: error: --explorer and --data are required (unless --resume)")
        report = run_discovery(DiscoverConfig(**given), args.out, progress=not args.no_progress)
    _summary(report, args.out, time.perf_counter() - start)
    return 0


def _summary(report, out, wall: float) -> None:
    print(f"{report['evaluations']} evaluations in {len(report['rounds'])} rounds, {report['statuses']}; "
          f"LLM ${report['llm']['usd']:.4f}; {wall:.0f}s")
    for f in report["finalists"]:
        held = f["heldout"] or {}
        line = f"{f['id']} objective {f['objective']:.3f}"
        if held.get("objective") is not None:
            line += f", held-out {held['objective']:.3f} {held.get('compare', {})}"
        print(f"  {line}\n    artifact: {f['artifact'] or f['artifact_error']}")
    print(f"report: {out}/report.md", file=sys.stderr)

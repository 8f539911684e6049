"""The paper's table through the trust boundary: the built-ins as plain artifacts, sandboxed, all 68 rows.

    python benchmarks/sandboxed_table.py        # ~15-30 min on 2 cores; writes benchmarks/results/sandboxed_table.json

Each built-in is exported as a plain controller artifact (`autotts controllers --export`), so it runs
the way any model-written controller does: its code in a kernel-sandboxed worker, its episodes driven
by the episode machines of `autotts eval` in lockstep. Every row of ../shared/replay/expected.csv
(100 seeds × 30 questions per cell) must come out as listed (accuracy to 2 decimals, tokens within
0.5). Also reported: wall time, CPU seconds of the evaluating processes and of their sandboxed workers.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replay"
BETAS = ("0.0", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sandboxed_table.json")
    args = parser.parse_args(argv)
    from autotts.controllers.artifact import save_artifact
    from autotts.controllers.builtins import plain_source
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores
    from autotts.sandbox import sandbox_status

    with open(args.data / "expected.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    stores = resolve_stores([args.data])
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: str(save_artifact(Path(tmp) / m, plain_source(m)))
                 for m in ("sc", "asc", "esc", "parallel_probe", "cmc")}
        specs = [paths[m] for m in ("sc", "asc", "esc", "parallel_probe")] + [f"{paths['cmc']}:beta={b}"
                                                                               for b in BETAS]
        load = os.getloadavg()
        wall = time.perf_counter()
        cells = evaluate(specs, stores, EvalOptions(seeds=100), workers=args.workers, progress=True)
        wall = time.perf_counter() - wall
    by_key = {}
    for cell in cells:
        method = next(m for m, p in paths.items() if cell.spec.startswith(p))
        config = cell.spec.split(":", 1)[1] if method == "cmc" else ""
        by_key[method, config, cell.model, cell.dataset] = cell.row()
    rows, matched = [], 0
    for want in expected:
        got = by_key[want["method"], want["config"] if want["method"] == "cmc" else "", want["model"], want["dataset"]]
        ok = (round(float(got["accuracy_pct"]), 2) == float(want["accuracy_pct"])
              and abs(float(got["avg_tokens"]) - float(want["avg_tokens_per_question"])) <= 0.5
              and got["failed"] == 0 and got["episodes"] == 3000)
        matched += ok
        rows.append({"method": want["method"], "config": want["config"], "model": want["model"],
                     "dataset": want["dataset"], "accuracy_pct": got["accuracy_pct"], "avg_tokens": got["avg_tokens"],
                     "expected_accuracy_pct": float(want["accuracy_pct"]),
                     "expected_avg_tokens": float(want["avg_tokens_per_question"]), "match": ok})
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
              "platform": platform.platform(), "python": platform.python_version(),
              "sandbox": sandbox_status().describe(), "load_average_at_start": load,
              "load_average_at_end": os.getloadavg(), "workers": args.workers, "wall_s": round(wall, 1),
              "episodes": sum(len(c.episodes) for c in cells),
              "cpu_s_evaluator_processes": round(usage.ru_utime + usage.ru_stime, 1),
              "rows": len(expected), "rows_matching": matched, "table": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{matched}/{len(expected)} rows of expected.csv reproduced through the sandbox; "
          f"{result['episodes']} episodes in {wall:.0f} s wall on {args.workers} workers -> {args.out}")
    return 0 if matched == len(expected) else 1


if __name__ == "__main__":
    sys.exit(main())

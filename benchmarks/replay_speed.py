"""Replay speed of the built-in controllers: episodes per CPU-second, table wall time, memory.

    python benchmarks/replay_speed.py            # all 8 stores of ../shared/replay, 100 seeds, 2 workers

Measures, on this machine (see benchmarks/README.md for what each number means):

* episodes per CPU-second of each built-in through the evaluator (single process, every store,
  every seed), against the reference implementation's figures; also the reference path
  (`run_episode` over `ReplayEnv`, what every non-built-in controller uses) on a sample;
* wall time of the 6-controller × 8-store table and of the 7-β cmc sweep on `--workers` processes,
  each in a fresh Python process (imports, store loading and the numba cache load included), with
  every cell checked against ../shared/replay/expected.csv where it has the row;
* the one-time costs: compiling the kernels from scratch (empty numba cache), loading them from the
  cache, loading and preparing the stores; peak resident memory of each process;
* the generic path across the trust boundary: cmc (β=0.5, 1.0) and parallel_probe exported as plain
  artifacts, as if a model had written them, replayed in a kernel-sandboxed worker with the episode
  machines in this process (lockstep); episodes per CPU-second counting this process *and* the worker,
  against the reference implementation (target 3×) and against the same code in process.

Writes benchmarks/results/replay_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replay"

# The reference implementation of the paper's replay, single process on this 2-core machine
# (episodes per CPU-second, from the issue that asked for this benchmark).
REFERENCE = {"sc": 8600, "esc": 6400, "asc": 820, "parallel_probe": 350, "cmc:beta=0.5": 380, "cmc:beta=1.0": 295}
TABLE_SPECS = list(REFERENCE)
SWEEP_SPECS = [f"cmc:beta={b}" for b in ("0.0", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0")]
TARGET_RATIO = 20
REPEATS = 3  # each controller's 24,000 episodes, evaluated this many times
TARGET_TABLE_WALL_S = 10.0
SANDBOXED_SPECS = ["cmc:beta=0.5", "cmc:beta=1.0", "parallel_probe"]
TARGET_SANDBOXED_RATIO = 3

# Run in a fresh interpreter: evaluate specs on every store with N workers, report timings as JSON.
_TABLE_SCRIPT = """
import json, resource, sys, time
t0 = time.perf_counter()
from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores
t1 = time.perf_counter()
stores = resolve_stores([sys.argv[1]])
t2 = time.perf_counter()
cells = evaluate(json.loads(sys.argv[2]), stores, EvalOptions(seeds=int(sys.argv[3])), workers=int(sys.argv[4]),
                 progress=False)
t3 = time.perf_counter()
mib = lambda who: resource.getrusage(who).ru_maxrss / 1024
cpu = lambda who: resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
print(json.dumps({"import_s": t1 - t0, "load_stores_s": t2 - t1, "evaluate_wall_s": t3 - t2,
                  "total_wall_s": t3 - t0, "cpu_s_parent": cpu(resource.RUSAGE_SELF),
                  "cpu_s_workers": cpu(resource.RUSAGE_CHILDREN), "peak_rss_mib_parent": mib(resource.RUSAGE_SELF),
                  "peak_rss_mib_largest_worker": mib(resource.RUSAGE_CHILDREN),
                  "rows": [c.row() for c in cells]}))
"""

# Run in a fresh interpreter: compile (or load from the cache) every kernel once.
_COMPILE_SCRIPT = """
import time
t0 = time.perf_counter(); c0 = time.process_time()
from autotts.controllers import load
from autotts.offline.check import synthetic_store
from autotts.offline.fast import JIT, run_fast
store = synthetic_store(0)
for spec in ("sc", "asc", "esc", "parallel_probe", "cmc"):
    assert run_fast(load(spec), store, [0]) is not None
print(JIT, time.perf_counter() - t0, time.process_time() - c0)
"""

# Run in a fresh interpreter with AUTOTTS_FAST=pure: the same kernels as plain Python (no numba).
_PURE_SCRIPT = """
import json, sys, time
from autotts.controllers import load
from autotts.offline import load_store
from autotts.offline.fast import JIT, run_fast
assert not JIT
store, seeds, rates = load_store(sys.argv[1]), list(range(int(sys.argv[2]))), {}
for spec in json.loads(sys.argv[3]):
    controller = load(spec)
    run_fast(controller, store, [0])
    start = time.process_time()
    episodes = len(run_fast(controller, store, seeds))
    rates[spec] = round(episodes / (time.process_time() - start))
print(json.dumps(rates))
"""


def machine() -> dict:
    import numpy

    try:
        import numba

        numba_version = numba.__version__
    except ImportError:
        numba_version = None
    return {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "numpy": numpy.__version__, "numba": numba_version,
            "load_average_at_start": os.getloadavg(),
            "note": "CPU shared with other jobs: wall times fluctuate, CPU-second rates much less"}


def _python(script: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode:
        raise SystemExit(f"benchmark subprocess failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def compile_costs() -> dict:
    """Kernels compiled from an empty cache, then loaded from the (then warm) default cache."""
    with tempfile.TemporaryDirectory() as cache:
        jit, cold_wall, cold_cpu = _python(_COMPILE_SCRIPT, env={"NUMBA_CACHE_DIR": cache}).split()
    _python(_COMPILE_SCRIPT)  # make sure the default cache is warm
    _, warm_wall, warm_cpu = _python(_COMPILE_SCRIPT).split()
    return {"jit": jit == "True", "cold_compile_wall_s": float(cold_wall), "cold_compile_cpu_s": float(cold_cpu),
            "warm_cache_load_wall_s": float(warm_wall), "warm_cache_load_cpu_s": float(warm_cpu)}


def throughput(stores: list, seeds: int) -> dict:
    """Episodes per CPU-second of each built-in through the evaluator (workers=1), with a breakdown."""
    from autotts.controllers import load
    from autotts.offline import ReplayEnv, run_episode
    from autotts.offline import fast as fast_module
    from autotts.offline.check import synthetic_store
    from autotts.offline.evaluate import EvalOptions, evaluate
    from autotts.offline.fast._arrays import orders, store_arrays

    # compile or load every kernel, import what the evaluator imports lazily (tqdm), before timing
    evaluate(TABLE_SPECS, [synthetic_store(0)], EvalOptions(seeds=1), workers=1, progress=False)
    c0 = time.process_time()  # one-time work per process, measured apart: arrays, branch orders, lists
    for store in stores:
        for count in set(store_arrays(store).branch_counts):
            orders(count, list(range(seeds)))
    for q in range(stores[0].n_questions):  # the reference-path sample's per-question lists
        stores[0].question(q)
    prepare_cpu = time.process_time() - c0

    timers = {"kernels": 0.0, "results": 0.0, "gc": 0.0}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                timers[name] += time.process_time() - start
        return wrapper

    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:  # CPU time inside the cyclic garbage collector
        if phase == "start":
            gc_started[0] = time.process_time()
        else:
            timers["gc"] += time.process_time() - gc_started[0]

    out = {}
    run_group, results = fast_module._run_group, fast_module._results
    fast_module._run_group, fast_module._results = timed("kernels", run_group), timed("results", results)
    gc.callbacks.append(on_gc)
    try:
        for spec in TABLE_SPECS:
            timers.update(kernels=0.0, results=0.0, gc=0.0)
            episodes, cpu = 0, 0.0
            for _ in range(REPEATS):
                start = time.process_time()
                cells = evaluate([spec], stores, EvalOptions(seeds=seeds), workers=1, progress=False)
                cpu += time.process_time() - start
                episodes += sum(len(c.episodes) for c in cells)
                del cells
            # the reference path on a sample: 2 seeds of the first store
            controller, env = load(spec), ReplayEnv(stores[0])
            start = time.process_time()
            sample = [run_episode(controller, env, q, s) for s in range(2) for q in range(stores[0].n_questions)]
            slow_rate = len(sample) / (time.process_time() - start)
            rate = episodes / cpu
            share = {"kernels": timers["kernels"] / cpu, "episode_results": timers["results"] / cpu,
                     "garbage_collector": timers["gc"] / cpu}
            share["evaluator_rest"] = 1 - sum(share.values())
            out[spec] = {"episodes": episodes, "cpu_s": round(cpu, 4), "episodes_per_cpu_s": round(rate),
                         "reference_impl": REFERENCE[spec], "ratio_vs_reference_impl": round(rate / REFERENCE[spec], 1),
                         "reference_path_episodes_per_cpu_s": round(slow_rate),
                         "speedup_vs_reference_path": round(rate / slow_rate, 1),
                         "cpu_share": {k: round(v, 3) for k, v in share.items()}}
    finally:
        fast_module._run_group, fast_module._results = run_group, results
        gc.callbacks.remove(on_gc)
    return {"prepare_stores_cpu_s": round(prepare_cpu, 4), "repeats": REPEATS, "per_controller": out}


def sandboxed_throughput(stores: list, seeds: int) -> dict:
    """The built-ins' code as plain artifacts through the sandbox: episodes per CPU-second (both processes)."""
    from autotts.controllers import load
    from autotts.controllers.artifact import save_artifact
    from autotts.controllers.builtins import plain_source
    from autotts.controllers.registry import parse_spec
    from autotts.offline import ReplayEnv, run_episode
    from autotts.offline.sandboxed import close_workers, run_sandboxed
    from autotts.sandbox import workers_cpu_s

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SANDBOXED_SPECS:
            name, params = parse_spec(spec)
            artifact = save_artifact(Path(tmp) / name, plain_source(name))
            artifact_spec = str(artifact) + "".join(f":{k}={v}" for k, v in params.items())
            run_sandboxed(artifact_spec, stores[0], [seeds + 1])  # start the worker and warm it up
            worker_before, start, episodes = workers_cpu_s(), time.process_time(), 0
            for store in stores:
                episodes += len(run_sandboxed(artifact_spec, store, list(range(seeds))))
            parent = time.process_time() - start
            worker = workers_cpu_s() - worker_before  # every group's worker, start-up included
            close_workers()
            controller, env = load(spec), ReplayEnv(stores[0])  # the same code in process, on a sample
            start = time.process_time()
            sample = [run_episode(controller, env, q, s) for s in range(2) for q in range(stores[0].n_questions)]
            in_process = len(sample) / (time.process_time() - start)
            rate = episodes / (parent + worker)
            out[spec] = {"episodes": episodes, "cpu_s_parent": round(parent, 3), "cpu_s_worker": round(worker, 3),
                         "episodes_per_cpu_s": round(rate), "reference_impl": REFERENCE[spec],
                         "ratio_vs_reference_impl": round(rate / REFERENCE[spec], 2),
                         "in_process_generic_episodes_per_cpu_s": round(in_process),
                         "target_ratio": TARGET_SANDBOXED_RATIO}
    return {"seeds": seeds, "stores": len(stores), "per_controller": out}


def table_wall(data: Path, specs: list[str], seeds: int, workers: int, repeats: int) -> dict:
    """Fresh processes evaluating `specs` on every store, `repeats` times; details of the fastest run,
    whose cells are checked against expected.csv (every run computes the same cells)."""
    runs = [json.loads(_python(_TABLE_SCRIPT, str(data), json.dumps(specs), str(seeds), str(workers)))
            for _ in range(repeats)]
    report = min(runs, key=lambda r: r["evaluate_wall_s"])
    report["evaluate_wall_s_all_runs"] = [round(r["evaluate_wall_s"], 3) for r in runs]
    report["total_wall_s_all_runs"] = [round(r["total_wall_s"], 3) for r in runs]
    expected = {}
    if (data / "expected.csv").is_file():
        with open(data / "expected.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                spec = f"cmc:{row['config']}" if row["method"] == "cmc" else row["method"]
                expected[spec, row["model"], row["dataset"]] = row
    checked = matched = 0
    for row in report.pop("rows"):
        want = expected.get((row["spec"], row["model"], row["dataset"]))
        if want is None or seeds != 100:
            continue
        checked += 1
        matched += (round(float(row["accuracy_pct"]), 2) == float(want["accuracy_pct"])
                    and abs(float(row["avg_tokens"]) - float(want["avg_tokens_per_question"])) <= 0.5)
    return {**report, "cells_checked_against_expected_csv": checked, "cells_matching": matched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED if SHARED.is_dir() else None,
                        help="folder of stores (default ../shared/replay, else the bundled stores)")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sandboxed-seeds", type=int, default=10,
                        help="seeds per store for the generic path across the sandbox (default 10)")
    parser.add_argument("--wall-repeats", type=int, default=3,
                        help="fresh-process runs of the table and of the sweep; the fastest is reported")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "replay_speed.json")
    parser.add_argument("--only-sandboxed", action="store_true",
                        help="measure only the generic path across the sandbox and update that part of --out")
    args = parser.parse_args(argv)
    from autotts.offline.evaluate import bundled_data_dir, resolve_stores

    data = args.data or bundled_data_dir()
    if args.only_sandboxed:
        return _only_sandboxed(resolve_stores([data]), args)
    facts = machine()
    print(f"replay speed on {facts['cpus']} CPUs, python {facts['python']}, numpy {facts['numpy']}, "
          f"numba {facts['numba']}; stores: {data}", flush=True)
    print("compiling the kernels from an empty cache, then loading them from the cache ...", flush=True)
    compiled = compile_costs()
    start = time.perf_counter()
    stores = resolve_stores([data])
    load_s = time.perf_counter() - start
    print(f"throughput through the evaluator, 1 process, {len(stores)} stores x {args.seeds} seeds ...", flush=True)
    speed = throughput(stores, args.seeds)
    print(f"the generic path across the sandbox, {len(stores)} stores x {args.sandboxed_seeds} seeds ...", flush=True)
    sandboxed = sandboxed_throughput(stores, args.sandboxed_seeds)
    print(f"{len(TABLE_SPECS)} x {len(stores)} table and {len(SWEEP_SPECS)}-beta sweep on {args.workers} workers "
          "(fresh processes) ...", flush=True)
    table = table_wall(data, TABLE_SPECS, args.seeds, args.workers, args.wall_repeats)
    sweep = table_wall(data, SWEEP_SPECS, args.seeds, args.workers, args.wall_repeats)
    table["cells"], sweep["cells"] = len(TABLE_SPECS) * len(stores), len(SWEEP_SPECS) * len(stores)
    print("the same kernels as plain Python (AUTOTTS_FAST=pure), first store, 10 seeds ...", flush=True)
    pure = json.loads(_python(_PURE_SCRIPT, stores[0].path, "10", json.dumps(TABLE_SPECS),
                              env={"AUTOTTS_FAST": "pure"}))
    result = {"machine": facts, "data": str(data), "stores": len(stores), "seeds": args.seeds,
              "workers": args.workers, "load_stores_wall_s": round(load_s, 3), "compile": compiled,
              "throughput": speed, "pure_python_kernels_episodes_per_cpu_s": pure, "sandboxed": sandboxed,
              "table_6x8": table, "cmc_sweep_7x8": sweep,
              "load_average_at_end": os.getloadavg(),
              "peak_rss_mib_benchmark_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "targets": {"ratio_vs_reference_impl": TARGET_RATIO, "table_wall_s": TARGET_TABLE_WALL_S}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {args.out}")
    return 0


def _only_sandboxed(stores: list, args: argparse.Namespace) -> int:
    print(f"the generic path across the sandbox, {len(stores)} stores x {args.sandboxed_seeds} seeds ...", flush=True)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    at_start = machine()  # before the run: its load average is the one at the start
    result["sandboxed"] = {**sandboxed_throughput(stores, args.sandboxed_seeds), "machine": at_start,
                           "load_average_at_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print_sandboxed(result["sandboxed"])
    print(f"wrote the sandboxed part of {args.out}")
    return 0


def _print_sandboxed(sandboxed: dict) -> None:
    print(f"\n{'plain artifact':15s} {'eps/CPU-s':>10s} {'reference':>9s} {'ratio':>7s} {'target':>7s} "
          f"{'in process':>10s}  CPU parent/worker (s)   [across the sandbox]")
    for spec, v in sandboxed["per_controller"].items():
        ok = "ok" if v["ratio_vs_reference_impl"] >= v["target_ratio"] else "MISS"
        print(f"{spec:15s} {v['episodes_per_cpu_s']:10d} {v['reference_impl']:9d} "
              f"{v['ratio_vs_reference_impl']:6.2f}x {ok:>7s} {v['in_process_generic_episodes_per_cpu_s']:10d}  "
              f"{v['cpu_s_parent']:.1f}/{v['cpu_s_worker']:.1f}")


def _print(r: dict) -> None:
    rows = r["throughput"]["per_controller"]
    print(f"\n{'controller':15s} {'eps/CPU-s':>10s} {'reference':>9s} {'ratio':>7s} {'target':>7s} "
          f"{'ref.path':>8s} {'speedup':>7s} {'pure py':>8s}  CPU share kernels/results/gc/rest")
    for spec, v in rows.items():
        ok = "ok" if v["ratio_vs_reference_impl"] >= TARGET_RATIO else "MISS"
        share = v["cpu_share"]
        print(f"{spec:15s} {v['episodes_per_cpu_s']:10d} {v['reference_impl']:9d} {v['ratio_vs_reference_impl']:6.1f}x "
              f"{ok:>7s} {v['reference_path_episodes_per_cpu_s']:8d} {v['speedup_vs_reference_path']:6.1f}x "
              f"{r['pure_python_kernels_episodes_per_cpu_s'][spec]:8d}  "
              f"{share['kernels']:.2f}/{share['episode_results']:.2f}/{share['garbage_collector']:.2f}/"
              f"{share['evaluator_rest']:.2f}")
    _print_sandboxed(r["sandboxed"])
    for key, label in (("table_6x8", "6-controller x 8-store table"), ("cmc_sweep_7x8", "7-beta cmc sweep")):
        t = r[key]
        walls = ", ".join(f"{w:.1f}" for w in t["evaluate_wall_s_all_runs"])
        print(f"{label}: {t['cells']} cells, evaluate {t['evaluate_wall_s']:.2f} s wall on {r['workers']} workers "
              f"(fastest of {walls}; "
              f"fresh process total {t['total_wall_s']:.2f} s: import {t['import_s']:.2f}, load stores "
              f"{t['load_stores_s']:.2f}; CPU {t['cpu_s_parent']:.1f} s parent + {t['cpu_s_workers']:.1f} s workers); "
              f"{t['cells_matching']}/{t['cells_checked_against_expected_csv']} cells "
              f"match expected.csv; peak RSS parent {t['peak_rss_mib_parent']:.0f} MiB, "
              f"worker {t['peak_rss_mib_largest_worker']:.0f} MiB")
    c = r["compile"]
    print(f"kernels: {'compiled (numba)' if c['jit'] else 'plain Python (numba absent)'}; from an empty cache "
          f"{c['cold_compile_wall_s']:.1f} s wall / {c['cold_compile_cpu_s']:.1f} s CPU (once per install), "
          f"from the cache {c['warm_cache_load_wall_s']:.2f} s wall per process")
    start, end = r["machine"]["load_average_at_start"], r["load_average_at_end"]
    print(f"load average (1 min) at start {start[0]:.1f}, at end {end[0]:.1f} on {r['machine']['cpus']} shared CPUs")
    print(f"table target < {TARGET_TABLE_WALL_S:.0f} s: "
          f"{'ok' if r['table_6x8']['evaluate_wall_s'] < TARGET_TABLE_WALL_S else 'MISS'} (evaluate), "
          f"{'ok' if r['table_6x8']['total_wall_s'] < TARGET_TABLE_WALL_S else 'MISS'} (fresh process end to end)")


if __name__ == "__main__":
    sys.exit(main())

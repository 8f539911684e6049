"""Cost of the kernel sandbox (autotts.sandbox): worker start-up and request round trip.

    python benchmarks/sandbox_jail.py          # ~10 s; writes benchmarks/results/sandbox_jail.json

* ``status_probe_s``: the one-time `sandbox_status()` probe of a fresh process (reads the Python
  installation's layout with ``ldd``, starts one jailed probe worker);
* ``startup``: `Worker.start` until the worker's entry module is imported and it said it is ready
  (bwrap, namespaces, seccomp, Python start-up, bootstrap), over --starts starts; ``close_ms`` the time
  `close()` takes to kill the tree and reap it;
* ``round_trip``: a 32-byte request echoed back (`autotts.sandbox._probe`), --requests times in a row
  on one worker, p50/p99/mean; also a 64 KiB request, and the same small request to an unsandboxed
  worker (the jail's own share of the round trip).

The machine is shared: wall times vary (the JSON records load averages, core count and versions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from autotts.sandbox import Limits, Worker, sandbox_status

HERE = Path(__file__).resolve().parent
PROBE = Path(sys.modules["autotts.sandbox"].__file__).parent / "_probe.py"
SOURCES = {"autotts.sandbox._probe": PROBE}
ENTRY = "autotts.sandbox._probe:main"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)

    return {"n": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99),
            "mean_ms": round(statistics.mean(ordered) * 1e3, 3), "max_ms": round(ordered[-1] * 1e3, 3)}


def round_trips(worker: Worker, payload: bytes, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        reply = worker.request(payload, timeout_s=10)
        samples.append(time.perf_counter() - started)
        assert reply == payload
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sandbox_jail.json")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    status = sandbox_status()
    probe_s = time.perf_counter() - started
    if not status.available:
        sys.exit(f"no sandbox here: {status.reason}")

    starts, closes = [], []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        worker = Worker.start(SOURCES, ENTRY, Limits())
        t1 = time.perf_counter()
        worker.close()
        starts.append(t1 - t0)
        closes.append(time.perf_counter() - t1)

    small = b"x" * 32
    with Worker.start(SOURCES, ENTRY) as worker:
        round_trips(worker, small, 50)  # warm-up
        jailed_small = round_trips(worker, small, args.requests)
        jailed_64k = round_trips(worker, b"y" * 65536, max(100, args.requests // 10))
    # the opt-out only applies where no jail works, so build the unsandboxed comparison directly
    from autotts.sandbox.jail import ENVIRONMENT, _launch_unsandboxed

    with Worker(_launch_unsandboxed(sys.executable, SOURCES, ENTRY, Limits(), dict(ENVIRONMENT)), Limits()) as plain:
        plain.wait_ready()
        round_trips(plain, small, 50)
        unsandboxed_small = round_trips(plain, small, args.requests)

    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "sandbox": status.describe(),
        "bwrap": status.bwrap_version,
        "status_probe_s": round(probe_s, 3),
        "startup": percentiles(starts),
        "close_ms": percentiles(closes),
        "round_trip": {"jailed_32B": jailed_small, "jailed_64KiB": jailed_64k, "unsandboxed_32B": unsandboxed_small},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(status.describe())
    print(f"status probe (once per process): {probe_s * 1e3:.0f} ms")
    print(f"start-up (ready):   p50 {result['startup']['p50_ms']} ms, p99 {result['startup']['p99_ms']} ms "
          f"over {args.starts}; close p50 {result['close_ms']['p50_ms']} ms")
    for name, stats in result["round_trip"].items():
        print(f"round trip {name:16s} p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms over {stats['n']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

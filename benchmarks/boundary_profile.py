"""Where the generic path's time goes: both halves of the trust boundary in one process, no jail.

    python benchmarks/boundary_profile.py cmc:beta=0.5 --seeds 3             # episodes per CPU-second
    python benchmarks/boundary_profile.py parallel_probe --seeds 10 --profile  # pyinstrument tree
    python benchmarks/boundary_profile.py cmc:beta=0.5 --seeds 3 --in-process # the same code, no boundary

The built-in `SPEC` is exported as a plain artifact and replayed with `run_sandboxed` on the first
store of ../shared/replay, as `replay_speed.py --only-sandboxed` does, except that each "worker" is
`controller_worker.Worker` called in this process through the same JSON codec (no jail, no pipe, no
interpreter start-up). That isolates the Python of the parent's episode machine, the wire codec, the
worker's mirror and the controller from the jail's fixed costs, and lets one profiler see both halves.

Instruction counts do not depend on the machine's load: run it under callgrind with ``--seeds 0`` (start-up
and one warm-up seed only) and ``--seeds 2``, and divide the difference by the episodes of two seeds::

    valgrind --tool=callgrind --callgrind-out-file=cg.0 python benchmarks/boundary_profile.py cmc:beta=0.5 --seeds 0
    valgrind --tool=callgrind --callgrind-out-file=cg.2 python benchmarks/boundary_profile.py cmc:beta=0.5 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path

from autotts.controllers import load
from autotts.controllers.artifact import save_artifact
from autotts.controllers.builtins import plain_source
from autotts.controllers.registry import parse_spec
from autotts.offline import ReplayEnv, run_episode
from autotts.offline import sandboxed as sandboxed_module
from autotts.offline.evaluate import resolve_stores
from autotts.sandbox import controller_worker, remote

SHARED = Path(__file__).resolve().parents[2] / "shared" / "replay"


class InProcessWorker:
    """A worker's side answered in this process: the same requests and replies, through the same codec."""

    failure = None

    def __init__(self) -> None:
        self.worker = controller_worker.Worker()

    @classmethod
    def start(cls, *_args: object, **_kwargs: object) -> InProcessWorker:
        return cls()

    def request(self, payload: bytes, timeout_s: float | None = None) -> bytes:
        request = controller_worker._loads(payload)
        op = request.pop("op")
        reply = getattr(self.worker, op)(**request)
        return controller_worker._dumps(reply) if op == "step" else json.dumps(reply).encode()

    def close(self) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="a built-in with parameters, e.g. cmc:beta=0.5")
    parser.add_argument("--seeds", type=int, default=3, help="seeds measured after one warm-up seed (0: none)")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--in-process", action="store_true", help="the built-in over ReplayEnv, no boundary")
    parser.add_argument("--profile", action="store_true", help="print a pyinstrument tree of the measured seeds")
    args = parser.parse_args()
    store = resolve_stores([str(args.data)])[0]
    seeds = list(range(args.seeds))
    if args.in_process:
        controller, env = load(args.spec), ReplayEnv(store)

        def run() -> int:
            return len([run_episode(controller, env, q, s) for s in seeds for q in range(store.n_questions)])

        warm = [run_episode(controller, env, q, 99) for q in range(store.n_questions)]
    else:
        remote.Worker = InProcessWorker  # the worker's code, in this process
        signal.signal(signal.SIGPROF, controller_worker._CLOCK.on_timer)  # as the worker's main() does
        signal.signal(signal.SIGALRM, controller_worker._CLOCK.on_timer)
        name, params = parse_spec(args.spec)
        artifact = save_artifact(Path(tempfile.mkdtemp()) / name, plain_source(name))
        spec = str(artifact) + "".join(f":{k}={v}" for k, v in params.items())

        def run() -> int:
            return len(sandboxed_module.run_sandboxed(spec, store, seeds))

        warm = sandboxed_module.run_sandboxed(spec, store, [99])
    assert warm
    if not seeds:
        return 0
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        run()
        profiler.stop()
        print(profiler.output_text(unicode=False))
        return 0
    start = time.process_time()
    episodes = run()
    cpu = time.process_time() - start
    where = "in process" if args.in_process else "both halves in one process"
    print(f"{args.spec} ({where}): {episodes} episodes, {episodes / cpu:.0f} episodes per CPU-second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

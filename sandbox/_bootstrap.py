"""First code of every worker: ``python -S -s -P -B _bootstrap.py CONFIG_JSON`` (standard library only).

Order matters: resource limits first, then the channel is moved to private descriptors (fd 0 becomes
/dev/null, fd 1 a copy of stderr), then the bound sources are put on sys.path, the entry module is
imported, the READY frame is sent, and only then does the entry function run. Exit codes: the entry's
own ``sys.exit(n)`` for n < 64 (anything else is 1), `EXIT_MEMORY` when the memory limit was hit, and
(inside bwrap) 128 + N for death by signal N.
"""

from __future__ import annotations

import os
import resource
import sys

EXIT_MEMORY = 100
_MEMORY_MESSAGE = b"\nautotts sandbox: memory limit exceeded (MemoryError)\n"
_RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "fsize": resource.RLIMIT_FSIZE,
            "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE}


def apply_limits(limits: dict[str, int]) -> None:
    """Lower every rlimit named in `limits` (never above the inherited hard limit); no core dumps."""
    for name, value in limits.items():
        kind = _RLIMITS[name]
        _, hard = resource.getrlimit(kind)
        soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
        new_hard = soft + 1 if name == "cpu" else soft  # SIGXCPU at the soft limit, SIGKILL a second later
        if hard != resource.RLIM_INFINITY:
            new_hard = min(new_hard, hard)
        resource.setrlimit(kind, (soft, new_hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def private_channel(channel_in: int, channel_out: int) -> None:
    """Move the parent's pipes to private fds; fd 0 reads /dev/null, fd 1 writes to stderr."""
    os.dup2(0, channel_in, inheritable=False)
    os.dup2(1, channel_out, inheritable=False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    os.closerange(max(channel_in, channel_out) + 1, 1024)  # nothing else inherited stays open


def main() -> None:
    import json

    config = json.loads(sys.argv[1])
    apply_limits(config["limits"])
    sys.path.extend(config["path"])  # after the stdlib: a bound source cannot shadow it
    from autotts.sandbox import _frames

    private_channel(_frames.CHANNEL_IN, _frames.CHANNEL_OUT)
    code = 0
    try:
        import importlib

        module_name, _, function = config["entry"].partition(":")
        entry = getattr(importlib.import_module(module_name), function or "main")
        _frames.write_frame(_frames.READY)
        entry()
    except MemoryError:
        os.write(2, _MEMORY_MESSAGE)
        os._exit(EXIT_MEMORY)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) and 0 <= exc.code < 64 else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

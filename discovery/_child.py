"""Entry point of a sandbox child: ``python -E -m autotts.discovery._child RLIMITS_JSON < request``.

Order matters: apply the resource limits, read the request, let the task prepare everything it
needs while still trusted (imports, store loading), arm the guard, then run the part that touches
candidate code. The result goes out as one JSON line on a private duplicate of the original
stdout; fd 1 itself is pointed at stderr so candidate prints cannot corrupt the reply.
"""

from __future__ import annotations

import resource
import sys

if __name__ == "__main__":  # limits first, before anything reads candidate code
    import json as _json

    _lim = _json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    if "cpu" in _lim:
        resource.setrlimit(resource.RLIMIT_CPU, (_lim["cpu"], _lim["cpu"] + 5))
    if "as" in _lim:
        resource.setrlimit(resource.RLIMIT_AS, (_lim["as"], _lim["as"]))
    if "fsize" in _lim:
        resource.setrlimit(resource.RLIMIT_FSIZE, (_lim["fsize"], _lim["fsize"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

import importlib
import json
import os
import traceback
from pathlib import Path

TASKS = {
    "evaluate": "autotts.discovery._evaltask:prepare",
    "save_artifact": "autotts.discovery.artifacts:prepare_save",
    "selftest": "autotts.discovery._child:prepare_selftest",
}


def prepare_selftest(payload: dict) -> tuple:
    """Run `payload["code"]` under the guard (used by the sandbox's own tests)."""
    for name in payload.get("preimport", []):  # loaded while trusted, like the evaluator's own modules
        importlib.import_module(name)
    code = compile(payload["code"], "<selftest>", "exec")

    def run():
        scope: dict = {}
        exec(code, scope)
        return scope.get("result")

    return run, [], []


def _package_roots() -> list[str]:
    import autotts.controllers
    import autotts.discovery
    import autotts.offline

    return [str(Path(m.__file__).resolve().parent) for m in (autotts.controllers, autotts.offline, autotts.discovery)]


def _die_with_parent() -> None:
    """Linux: SIGKILL this child when the process that started it dies (a killed loop leaves no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the signal was armed
        os._exit(1)


def main() -> None:
    _die_with_parent()
    out = os.dup(1)
    os.dup2(2, 1)
    reply: dict
    try:
        from autotts.discovery import guard

        request = json.loads(sys.stdin.buffer.read())
        module_name, _, func = TASKS[request["task"]].partition(":")
        run, reads, writes = getattr(importlib.import_module(module_name), func)(request["payload"])
        guard.arm(list(reads) + _package_roots(), list(writes))
        try:
            result = run()
            reply = {"ok": True, "result": result, "violations": guard.violations()}
        except MemoryError:
            reply = {"ok": False, "kind": "memory", "error": "memory limit exceeded (MemoryError)",
                     "violations": guard.violations()}
        except guard.SandboxViolation as exc:
            reply = {"ok": False, "kind": "violation", "error": str(exc), "violations": guard.violations()}
        except BaseException as exc:  # the task's own failure, reported, never raised
            reply = {"ok": False, "kind": "crash", "error": f"{type(exc).__name__}: {exc}",
                     "trace": traceback.format_exc(limit=-6), "violations": guard.violations()}
    except BaseException as exc:
        reply = {"ok": False, "kind": "crash", "error": f"sandbox set-up failed: {type(exc).__name__}: {exc}"}
    data = (json.dumps(reply, default=str) + "\n").encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
    os._exit(0)


if __name__ == "__main__":
    main()

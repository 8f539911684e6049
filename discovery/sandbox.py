"""Running untrusted controller code: a child process with limits, no secrets and no network.

`run_task(task, payload, limits)` starts ``python -E`` running `_child` (from the same source
directories as this process) with

* CPU-time, address-space, output-size and core limits (`resource.setrlimit`, applied by the child
  as its first act, before it reads any candidate code; no `preexec_fn`, so starting children from
  threads is safe) and a wall-clock limit enforced here by killing the process group;
* an environment holding only an allow-list (no API keys, no proxies, no user paths);
* a fresh network namespace when `unshare` works without extra privileges here (checked once;
  otherwise the audit hook in `guard` is the network barrier, and `network_isolated()` says so);
* the child's own guard (`guard.arm`): an audit hook refusing sockets, processes, signals, native
  code and files outside the allowed roots, armed before the candidate is imported.

Whatever happens in the child (crash, timeout, memory bomb, forbidden call) comes back as a
`SandboxResult` with a `kind` and a one-paragraph `error`; `run_task` itself never raises for it.
The sandbox contains the candidate; it does not make its scores tamper-proof against code written
to cheat (the candidate shares the child with the evaluator).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["Limits", "SandboxResult", "child_env", "network_isolated", "run_task"]

_ENV_KEEP = ("LANG", "LC_ALL", "TZ")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 300.0
    memory_mb: int = 3072
    wall_seconds: float = 600.0
    output_mb: int = 16


@dataclass
class SandboxResult:
    kind: str  # ok | violation | timeout | cpu | memory | output | crash
    result: Any = None
    error: str | None = None
    violations: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def child_env() -> dict[str, str]:
    """The whole environment a sandboxed child gets."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update({"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


@lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    if os.environ.get("AUTOTTS_SANDBOX_NETNS", "1") == "0" or not shutil.which("unshare"):
        return ()
    for prefix in (("unshare", "--net"), ("unshare", "--user", "--map-root-user", "--net")):
        try:
            probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=20,
                                   env=child_env())
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def network_isolated() -> bool:
    """True when sandboxed children run in their own (empty) network namespace."""
    return bool(_netns_prefix())


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# The child imports autotts from the very directories the parent runs from (not whatever install
# the interpreter would find), so the sandbox always evaluates with the loop's own code.
_BOOT = """
import importlib.machinery, importlib.util, json, runpy, sys
_dirs = json.loads(sys.argv[2])
class _Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "autotts":
            return importlib.machinery.ModuleSpec("autotts", None, is_package=True)
        if name in _dirs:
            return importlib.util.spec_from_file_location(name, _dirs[name] + "/__init__.py",
                                                          submodule_search_locations=[_dirs[name]])
        return None
sys.meta_path.insert(0, _Finder)
sys.argv = sys.argv[:2]
runpy.run_module("autotts.discovery._child", run_name="__main__", alter_sys=True)
"""


def _package_dirs() -> dict[str, str]:
    import autotts.controllers
    import autotts.discovery
    import autotts.offline

    return {m.__name__: str(Path(m.__file__).resolve().parent)
            for m in (autotts.controllers, autotts.offline, autotts.discovery)}


def run_task(task: str, payload: dict[str, Any], limits: Limits | None = None) -> SandboxResult:
    """Run sandbox task `task` (see `_child.TASKS`) on `payload` in a limited child process."""
    limits = limits or Limits()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as tmp:
        work = Path(tmp)
        (work / "cwd").mkdir()
        stdin = work / "request.json"
        rlimits = {"cpu": max(1, int(limits.cpu_seconds)), "as": int(limits.memory_mb) * 1024 * 1024,
                   "fsize": int(limits.output_mb) * 1024 * 1024}
        stdin.write_text(json.dumps({"task": task, "payload": payload}), encoding="utf-8")
        out_path, err_path = work / "stdout", work / "stderr"
        cmd = [*_netns_prefix(), sys.executable, "-E", "-c", _BOOT, json.dumps(rlimits), json.dumps(_package_dirs())]
        killed = False
        with open(stdin, "rb") as fin, open(out_path, "wb") as fout, open(err_path, "wb") as ferr:
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=work / "cwd", env=child_env(),
                                    start_new_session=True)
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                killed = True
                _kill_group(proc)
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
        wall = time.perf_counter() - start
        stderr = _tail(err_path)
        return _outcome(proc.returncode, killed, out_path, stderr, wall, limits)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _outcome(code: int, killed: bool, out_path: Path, stderr: str, wall: float, limits: Limits) -> SandboxResult:
    def fail(kind: str, error: str) -> SandboxResult:
        return SandboxResult(kind, error=error, stderr_tail=stderr, wall_s=wall)

    if killed:
        return fail("timeout", f"wall-clock limit of {limits.wall_seconds:g}s exceeded; the process was killed")
    if code == -signal.SIGXCPU:
        return fail("cpu", f"CPU-time limit of {limits.cpu_seconds:g}s exceeded")
    if code == -signal.SIGXFSZ:
        return fail("output", f"output limit of {limits.output_mb} MiB exceeded")
    if code == -signal.SIGKILL:
        return fail("memory", f"killed by SIGKILL (memory limit of {limits.memory_mb} MiB, the CPU hard limit or "
                    "the OOM killer)")
    try:
        text = out_path.read_text(encoding="utf-8")
        reply = json.loads(text.strip().splitlines()[-1]) if text.strip() else None
    except (OSError, ValueError, UnicodeDecodeError):
        reply = None
    if not isinstance(reply, dict) or "ok" not in reply:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        if "MemoryError" in stderr:
            return fail("memory", f"memory limit of {limits.memory_mb} MiB exceeded (MemoryError)")
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return fail("crash", f"sandbox child died with {how} without a result: {last}")
    violations = [str(v) for v in reply.get("violations") or []]
    if not reply["ok"]:
        kind = reply.get("kind") if reply.get("kind") in ("memory", "crash", "violation") else "crash"
        if violations and kind == "crash":
            kind = "violation"
        return SandboxResult(kind, error=str(reply.get("error")), violations=violations, stderr_tail=stderr,
                             wall_s=wall)
    kind = "violation" if violations else "ok"
    error = None if not violations else "forbidden operations attempted: " + "; ".join(violations[:5])
    return SandboxResult(kind, result=reply.get("result"), error=error, violations=violations, stderr_tail=stderr,
                         wall_s=wall)

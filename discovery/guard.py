"""Inside the sandbox child: the audit hook and environment guard armed before candidate code runs.

Resource limits (CPU, memory, output) are set by the parent before the child starts; this module
adds what only the child can do: a `sys.addaudithook` hook that refuses sockets, processes,
signals, native code, file writes outside the allowed roots and reads outside the Python install
and the store files, plus an `os.environ` that refuses every variable outside a small allow-list.
Each refusal raises `SandboxViolation` *and* is recorded, so a candidate that swallows the
exception is still reported. Audit hooks cannot be removed once added.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, MutableMapping
from pathlib import Path

from .errors import SandboxViolation

__all__ = ["ALLOWED_ENV", "FORBIDDEN_MODULES", "SandboxViolation", "arm", "violations"]

ALLOWED_ENV = frozenset({"LANG", "LC_ALL", "TZ", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
                         "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"})
FORBIDDEN_MODULES = frozenset({
    "socket", "_socket", "ssl", "_ssl", "select", "selectors", "asyncio", "subprocess", "_posixsubprocess",
    "multiprocessing", "concurrent", "threading", "_thread", "signal", "resource", "ctypes", "_ctypes", "cffi",
    "mmap", "pty", "fcntl", "urllib", "http", "ftplib", "smtplib", "poplib", "imaplib", "telnetlib",
    "xmlrpc", "webbrowser", "requests", "httpx", "httpcore", "aiohttp", "shutil", "importlib", "pickle",
    "marshal", "gc", "code", "codeop", "pdb"})
_DENIED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                    "os.system", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.setuid", "os.chroot",
                    "pty.", "ctypes.", "mmap.", "resource.", "signal.", "sys.addaudithook", "sys.settrace",
                    "sys.setprofile", "urllib.", "http.", "ftplib.", "smtplib.", "webbrowser.", "builtins.input",
                    "winreg.", "_winapi.", "fcntl.", "msvcrt.", "os.setns", "os.unshare", "os.memfd_create")
_PATH_EVENTS = {"os.mkdir": 1, "os.rename": 2, "os.remove": 1, "os.rmdir": 1, "os.chmod": 1, "os.chown": 1,
                "os.link": 2, "os.symlink": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
                "shutil.copyfile": 2, "shutil.move": 2}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

_violations: list[str] = []
_state = {"armed": False, "busy": False}


def violations() -> list[str]:
    """Every refusal so far, in order (at most 50 kept)."""
    return list(_violations)


def _refuse(what: str) -> None:
    if len(_violations) < 50:
        _violations.append(what)
    raise SandboxViolation(f"sandbox: {what} is not allowed")


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _resolve(raw: object) -> str | None:
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if not isinstance(raw, str):
        return None
    return os.path.realpath(raw)


class _GuardedEnviron(MutableMapping):
    """`os.environ` for candidates: the allow-listed variables only; anything else is a violation."""

    def __init__(self, data: dict[str, str]) -> None:
        self._data = {k: v for k, v in data.items() if k in ALLOWED_ENV}

    def __getitem__(self, key: str) -> str:
        if key not in ALLOWED_ENV:
            _refuse(f"reading environment variable {key!r}")
        return self._data[key]

    def get(self, key, default=None):  # type: ignore[override]
        if key not in ALLOWED_ENV:
            _refuse(f"reading environment variable {key!r}")
        return self._data.get(key, default)

    def __setitem__(self, key: str, value: str) -> None:
        _refuse(f"setting environment variable {key!r}")

    def __delitem__(self, key: str) -> None:
        _refuse(f"deleting environment variable {key!r}")

    def __iter__(self) -> Iterator[str]:
        _refuse("listing the environment")
        return iter(())

    def __len__(self) -> int:
        _refuse("listing the environment")
        return 0

    def copy(self) -> dict[str, str]:
        _refuse("copying the environment")
        return {}


def arm(read_roots: list[str], write_roots: list[str] = ()) -> None:  # type: ignore[assignment]
    """From now on, guard this process (irreversible)."""
    python_roots = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    python_roots |= {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    reads = tuple(sorted(python_roots | {os.path.realpath(p) for p in read_roots}))
    writes = tuple(os.path.realpath(p) for p in write_roots)
    forbidden_reads = ("/proc", "/sys", "/dev")  # never, even if a root above them is allowed

    def check_path(raw: object, *, write: bool, event: str) -> None:
        path = _resolve(raw)
        if path is None:
            if write or event != "open":
                _refuse(f"{event} on file descriptor {raw!r}")
            return
        if write:
            if not _under(path, writes):
                _refuse(f"writing {path}")
        elif not (_under(path, reads) or _under(path, writes)) or _under(path, forbidden_reads):
            _refuse(f"reading {path}")

    def hook(event: str, args: tuple) -> None:
        if not _state["armed"] or _state["busy"]:
            return
        _state["busy"] = True
        try:
            if event == "open":
                raw, mode, flags = [*args, None, None][:3]
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    mode is None and isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
                check_path(raw, write=writing, event="open")
            elif event == "import":
                top = str(args[0]).split(".")[0]
                if top in FORBIDDEN_MODULES:
                    _refuse(f"importing module {args[0]!r}")
            elif event in _PATH_EVENTS:
                for raw in args[:_PATH_EVENTS[event]]:
                    check_path(raw, write=True, event=event)
            elif event in ("os.listdir", "os.scandir"):
                check_path(args[0] if args else ".", write=False, event=event)
            elif event.startswith(_DENIED_PREFIXES):
                _refuse(f"{event}{_brief(args)}")
        finally:
            _state["busy"] = False

    os.environ = _GuardedEnviron(dict(os.environ))  # type: ignore[assignment]  # noqa: B003 - replaced on purpose
    os.environb = None  # type: ignore[attr-defined]
    sys.addaudithook(hook)
    _state["armed"] = True


def _brief(args: tuple) -> str:
    text = ", ".join(repr(a) for a in args[:2])
    return f"({text[:80]})" if text else ""


def allowed_read_roots(paths: list[str]) -> list[str]:
    """The store files a task may read (their resolved paths)."""
    return [str(Path(p).resolve()) for p in paths]

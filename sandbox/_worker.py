"""The parent's side of one running worker: length-prefixed frames, deadlines, and the end of its process tree.

`WorkerProcess` wraps a process already launched (jail.py): requests go to its stdin and replies come
from its stdout as frames (`_frames`: 4-byte length, then bytes). The parent reads nothing it did not
ask for: a reply larger than ``Limits.max_reply_bytes`` kills the worker before it is read
(`WorkerOutputTooLarge`), stderr is drained by a thread that keeps only its tail, and every wait has a
wall-clock deadline (`WorkerTimeout`). Any failure ends the worker for good. Starting one, with or
without the jail, is `channel.Worker.start`; the jail's own probe (jail.py) talks to its probe worker
through this class, which is why it lives apart from `Worker.start`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Self

from ._bootstrap import EXIT_MEMORY
from ._frames import HEADER, READY
from .errors import (
    WorkerClosed,
    WorkerCPULimit,
    WorkerCrashed,
    WorkerError,
    WorkerMemoryLimit,
    WorkerOutputTooLarge,
    WorkerTimeout,
)
from .limits import Limits

if TYPE_CHECKING:
    from .jail import Launched

__all__ = ["WorkerProcess", "workers_cpu_s"]

_TICK = os.sysconf("SC_CLK_TCK")
_ended_cpu_s = 0.0  # CPU seconds of this process's workers that have ended (read just before their kill)
_live: weakref.WeakSet[WorkerProcess] = weakref.WeakSet()
_usage_lock = threading.Lock()


def _tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by process `root` and its descendants (from /proc).

    A killed jail's CPU time does not reliably reach our ``RUSAGE_CHILDREN`` (its pid 1 dies before it
    reaps), so the parent reads it while the tree is still there."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        with suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            total += sum(map(int, fields[11:15])) / _TICK  # its own and its reaped children's
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children", "rb") as fh:
                    todo.extend(map(int, fh.read().split()))
    return total


def workers_cpu_s() -> float:
    """CPU seconds used by every worker this process started: those ended and those still running
    (benchmarks count it beside the parent's own `time.process_time()`)."""
    with _usage_lock:
        live = list(_live)
        ended = _ended_cpu_s
    return ended + sum(_tree_cpu_s(w.pid) for w in live)


class _StderrTail:
    """Drains a pipe in a daemon thread, keeping only its last `keep` bytes."""

    def __init__(self, pipe: Any, keep: int) -> None:
        self._pipe, self._keep = pipe, keep
        self._tail = bytearray()
        self._lock = threading.Lock()
        self.total = 0
        self._thread = threading.Thread(target=self._drain, name="worker-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        with suppress(OSError, ValueError):
            while chunk := os.read(self._pipe.fileno(), 65536):
                with self._lock:
                    self.total += len(chunk)
                    self._tail += chunk
                    del self._tail[:-self._keep]

    def text(self, wait_s: float = 0.0) -> str:
        self._thread.join(wait_s)  # after the worker ended: let the last bytes arrive
        with self._lock:
            return self._tail.decode("utf-8", "replace")


def _describe_exit(returncode: int, jailed: bool, limits: Limits) -> tuple[type[WorkerCrashed], str, str, int | None]:
    """(error class, kind, words, signal) for a worker's exit status (bwrap reports signal N as 128 + N)."""
    sig = -returncode if returncode < 0 else (returncode - 128 if jailed and returncode > 128 else None)
    if returncode == EXIT_MEMORY:
        words = f"memory limit exceeded ({limits.memory_bytes} bytes of address space)"
        return WorkerMemoryLimit, "memory", words, None
    if sig is None:
        return WorkerCrashed, "exit", f"worker exited with code {returncode}", None
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
    if sig == signal.SIGXCPU:
        return WorkerCPULimit, "cpu", f"CPU time limit exceeded ({limits.cpu_s} s; {name})", sig
    if sig == signal.SIGXFSZ:
        return WorkerCrashed, "file-size", f"file size limit exceeded ({limits.file_bytes} bytes; {name})", sig
    if sig == signal.SIGKILL:
        return WorkerCrashed, "signal", f"worker killed by {name} (CPU hard limit or the kernel's OOM killer)", sig
    return WorkerCrashed, "signal", f"worker died by {name}", sig


class WorkerProcess:
    """One running worker process and its framed channel (sync; not for concurrent use without a lock)."""

    def __init__(self, launched: Launched, limits: Limits) -> None:
        self.limits = limits
        self._launched = launched
        self._proc: subprocess.Popen = launched.proc
        self._stdin, self._stdout = self._proc.stdin.fileno(), self._proc.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._stdin, False)
        self._stderr = _StderrTail(self._proc.stderr, limits.stderr_tail_bytes)
        self._lock = threading.RLock()
        self._ready = False
        self._info: dict[str, int] = {}
        self._pidfd: int | None = None
        self._error: WorkerError | None = None
        self._closed = False
        self._budget_s = limits.wall_s
        with _usage_lock:
            _live.add(self)

    # --- what it is ---------------------------------------------------------------------------------
    @property
    def jailed(self) -> bool:
        """True inside bwrap; False for an (explicitly allowed) unsandboxed subprocess."""
        return self._launched.jailed

    @property
    def pid(self) -> int:
        """Host pid of the process the parent started (bwrap, or the unsandboxed Python)."""
        return self._proc.pid

    def namespaces(self) -> dict[str, int]:
        """Host-side namespace ids of the jail ({"pid": inode, ...} and "child-pid"), {} unsandboxed."""
        self.wait_ready()
        return dict(self._info)

    def stderr_tail(self) -> str:
        """The last ``Limits.stderr_tail_bytes`` the worker wrote to stderr (or fd 1)."""
        return self._stderr.text()

    # --- requests -----------------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until the worker's entry module imported (its READY frame), or raise why not."""
        with self._lock:
            if self._ready:
                return
            self._check_usable()
            deadline = self._deadline(timeout_s)
            try:
                frame = self._read_frame(deadline, "start-up")
                if frame != READY:
                    raise WorkerCrashed(f"worker sent {frame[:60]!r} instead of its ready frame", kind="protocol",
                                        returncode=None, stderr_tail=self._stderr.text())
                self._ready = True
                if self._launched.jailed:
                    self._read_info(deadline)
            except WorkerError as exc:
                raise self._fail(exc) from None

    def request(self, payload: bytes, timeout_s: float | None = None) -> bytes:
        """Send one frame and return the reply frame, within `timeout_s` (default ``Limits.wall_s``)."""
        with self._lock:
            self.wait_ready(timeout_s)
            self._check_usable()
            deadline = self._deadline(timeout_s)
            try:
                self._write(HEADER.pack(len(payload)) + bytes(payload), deadline)
                return self._read_frame(deadline, "reply")
            except WorkerError as exc:
                raise self._fail(exc) from None

    def close(self) -> None:
        """Kill the worker's whole process tree and wait until it is gone (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._account()
            self._kill()
            for pipe in (self._proc.stdin, self._proc.stdout):
                with suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
            self._stderr.text(wait_s=1.0)
            with suppress(OSError):
                self._proc.stderr.close()  # type: ignore[union-attr]
            self._launched.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()

    # --- internals ----------------------------------------------------------------------------------
    def _deadline(self, timeout_s: float | None) -> float:
        self._budget_s = timeout_s if timeout_s is not None else self.limits.wall_s
        return time.monotonic() + self._budget_s

    def _check_usable(self) -> None:
        if self._closed:
            raise WorkerClosed("worker is closed")
        if self._error is not None:
            raise WorkerClosed(f"worker already failed: {self._error.args[0].splitlines()[0]}")

    def _fail(self, exc: WorkerError) -> WorkerError:
        """Record the first failure, end the worker, return the error to raise."""
        self._error = exc
        self.close()
        return exc

    def _account(self) -> None:
        """Move this worker's CPU time from the live set to the ended total (see `workers_cpu_s`)."""
        global _ended_cpu_s
        used = _tree_cpu_s(self.pid) if self._proc.returncode is None else 0.0
        with _usage_lock:
            _live.discard(self)
            _ended_cpu_s += used

    def _kill(self) -> None:
        """SIGKILL the jail's pid 1 (the kernel then kills everything in its pid namespace) and let bwrap
        reap it and exit; SIGKILL bwrap's process group if it does not (or when there is no jail)."""
        if self._pidfd is not None:
            with suppress(OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        if self._proc.returncode is None:  # not reaped yet, so its pid cannot belong to anyone else
            with suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        if self._pidfd is not None:
            select.select([self._pidfd], [], [], 10)  # readable once pid 1, and so its namespace, is gone
            os.close(self._pidfd)
            self._pidfd = None

    def _wait_io(self, fd: int, events: int, deadline: float, what: str) -> None:
        poller = select.poll()
        poller.register(fd, events)
        while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                raise WorkerTimeout(f"no {what} within the wall-clock limit of {self._budget_s:g} s; worker killed",
                                    stderr_tail=self._stderr.text())

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait_io(self._stdin, select.POLLOUT, deadline, "room in the request pipe")
            try:
                view = view[os.write(self._stdin, view):]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise self._crashed() from None

    def _read_exact(self, n: int, deadline: float, what: str) -> bytes:
        chunks, got = [], 0
        while got < n:
            self._wait_io(self._stdout, select.POLLIN, deadline, what)
            chunk = os.read(self._stdout, min(n - got, 1 << 20))
            if not chunk:
                raise self._crashed()
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float, what: str) -> bytes:
        (size,) = HEADER.unpack(self._read_exact(HEADER.size, deadline, what))
        if size > self.limits.max_reply_bytes:
            raise WorkerOutputTooLarge(f"worker announced a {size}-byte {what}, over the limit of "
                                       f"{self.limits.max_reply_bytes} bytes; killed before reading it",
                                       stderr_tail=self._stderr.text())
        return self._read_exact(size, deadline, what)

    def _crashed(self) -> WorkerCrashed:
        """The error for a worker whose channel closed: how it ended, with its stderr tail."""
        try:
            returncode = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return WorkerCrashed("worker closed its channel but kept running; killed", kind="exit",
                                 returncode=None, stderr_tail=self._stderr.text())
        cls, kind, words, sig = _describe_exit(returncode, self._launched.jailed, self.limits)
        return cls(words, kind=kind, returncode=returncode, signal=sig, stderr_tail=self._stderr.text(wait_s=1.0))

    def _read_info(self, deadline: float) -> None:
        """bwrap's --info-fd JSON: the host pid of the jail's pid 1 and its namespace ids."""
        fd, data, raw = self._launched.info_fd, b"", None
        while fd is not None and raw is None and time.monotonic() < deadline:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
            with suppress(ValueError):
                raw = json.loads(data)
        if raw is None:
            return
        pid = int(raw["child-pid"])
        self._info = {"child-pid": pid}
        for key, value in raw.items():
            if key.endswith("-namespace"):
                self._info[key.removesuffix("-namespace")] = int(value)
        with suppress(OSError):
            self._info["user"] = os.stat(f"/proc/{pid}/ns/user").st_ino
        with suppress(OSError):
            self._pidfd = os.pidfd_open(pid)

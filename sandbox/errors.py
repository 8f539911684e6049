"""Errors of the sandbox, under the SDK's one exception tree.

    AutoTTSError
    └── SandboxError
        ├── CandidateError          controller code that does not load, defines no single class, or refuses its
        │                           parameters (`stage` says where)
        ├── SandboxUnavailable      no kernel isolation works here (the message names what is missing)
        └── WorkerError             one worker failed; it is gone afterwards (start a new one)
            ├── WorkerCrashed       exited or died by a signal (exit code, signal, stderr tail)
            │   ├── WorkerCPULimit      its CPU-seconds limit was hit
            │   └── WorkerMemoryLimit   its address-space limit was hit
            ├── WorkerTimeout       no reply within the wall-clock limit (killed)
            ├── WorkerOutputTooLarge  a reply over the size limit (killed before it was read)
            └── WorkerClosed        the worker was already closed
"""

from __future__ import annotations

from autotts.controllers.errors import AutoTTSError

__all__ = [
    "CandidateError",
    "SandboxError",
    "SandboxUnavailable",
    "WorkerCPULimit",
    "WorkerClosed",
    "WorkerCrashed",
    "WorkerError",
    "WorkerMemoryLimit",
    "WorkerOutputTooLarge",
    "WorkerTimeout",
]


class SandboxError(AutoTTSError):
    """Base of the sandbox's errors."""


class CandidateError(SandboxError):
    """The controller code cannot be used: it does not load, defines no single controller class, or
    its parameters are refused. `stage` says where (load, schedule, new)."""

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class SandboxUnavailable(SandboxError):
    """Kernel isolation does not work on this machine and running unsandboxed was not allowed."""


class WorkerError(SandboxError):
    """A worker failed; `stderr_tail` holds the end of what it wrote to stderr."""

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        tail = f"\n--- worker stderr (tail) ---\n{stderr_tail.rstrip()}" if stderr_tail.strip() else ""
        super().__init__(message + tail)


class WorkerCrashed(WorkerError):
    """The worker exited or died; `kind` is "exit", "signal", "cpu", "memory", "file-size" or "protocol"."""

    def __init__(self, message: str, *, kind: str, returncode: int | None, signal: int | None = None,
                 stderr_tail: str = "") -> None:
        self.kind, self.returncode, self.signal = kind, returncode, signal
        super().__init__(message, stderr_tail=stderr_tail)


class WorkerCPULimit(WorkerCrashed):
    """The worker used up its CPU seconds (SIGXCPU/SIGKILL from RLIMIT_CPU)."""


class WorkerMemoryLimit(WorkerCrashed):
    """The worker hit its address-space limit (MemoryError in the worker)."""


class WorkerTimeout(WorkerError):
    """The worker did not reply within the wall-clock limit and was killed."""


class WorkerOutputTooLarge(WorkerError):
    """The worker announced a reply larger than the limit and was killed before it was read."""


class WorkerClosed(WorkerError):
    """A request to a worker that is already closed (or failed before)."""

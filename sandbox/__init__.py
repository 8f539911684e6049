"""autotts.sandbox: run untrusted (model-written) Python in a worker isolated by the kernel.

`Worker.start(sources, entry, limits)` starts a jailed Python (bubblewrap namespaces, seccomp,
rlimits; see `jail`) running ``entry`` with the named source folders bound read-only, and talks to
it in length-prefixed frames (`channel`); `sandbox_status()` says whether and how the jail works
here, or what is missing; `workers_cpu_s()` the CPU time its workers used. Worker-side framing:
`autotts.sandbox._frames` (standard library only).
"""

from ._worker import workers_cpu_s
from .channel import AsyncWorker, Worker
from .errors import (
    CandidateError,
    SandboxError,
    SandboxUnavailable,
    WorkerClosed,
    WorkerCPULimit,
    WorkerCrashed,
    WorkerError,
    WorkerMemoryLimit,
    WorkerOutputTooLarge,
    WorkerTimeout,
)
from .jail import ALLOW_UNSANDBOXED_ENV, BWRAP_ENV, NO_SANDBOX_FLAG, Status, sandbox_status, unsandboxed_allowed
from .limits import Limits

__all__ = [
    "ALLOW_UNSANDBOXED_ENV",
    "BWRAP_ENV",
    "NO_SANDBOX_FLAG",
    "AsyncWorker",
    "CandidateError",
    "Limits",
    "SandboxError",
    "SandboxUnavailable",
    "Status",
    "Worker",
    "WorkerCPULimit",
    "WorkerClosed",
    "WorkerCrashed",
    "WorkerError",
    "WorkerMemoryLimit",
    "WorkerOutputTooLarge",
    "WorkerTimeout",
    "sandbox_status",
    "unsandboxed_allowed",
    "workers_cpu_s",
]

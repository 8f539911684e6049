"""Resource limits of one worker: what the kernel enforces inside, and what the parent enforces outside."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Limits"]

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one worker process.

    Applied by the worker's bootstrap (rlimits) before any caller code is imported: `cpu_s` (RLIMIT_CPU:
    SIGXCPU, then SIGKILL one second later), `memory_bytes` (RLIMIT_AS: allocations fail, reported as a
    memory-limit crash), `file_bytes` (RLIMIT_FSIZE), `processes` (RLIMIT_NPROC, threads included; in
    an unsandboxed worker it counts all of the user's processes),
    `open_files` (RLIMIT_NOFILE), and no core dumps. `tmpfs_bytes` caps the jail's private /tmp.
    Enforced by the parent: `wall_s` (default time-out of one request, and of start-up) and
    `max_reply_bytes` (a larger reply kills the worker). `stderr_tail_bytes` of the worker's stderr are
    kept for error messages; the rest is read and dropped.

    >>> Limits(cpu_s=5).rlimits()["cpu"]
    5
    """

    cpu_s: int = 60
    memory_bytes: int = 1024 * MIB
    file_bytes: int = 16 * MIB
    processes: int = 32
    open_files: int = 64
    tmpfs_bytes: int = 16 * MIB
    wall_s: float = 60.0
    max_reply_bytes: int = 16 * MIB
    stderr_tail_bytes: int = 8192

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")

    def rlimits(self) -> dict[str, int]:
        """The part the worker's bootstrap applies (JSON-ready)."""
        return {"cpu": int(self.cpu_s), "as": int(self.memory_bytes), "fsize": int(self.file_bytes),
                "nproc": int(self.processes), "nofile": int(self.open_files)}

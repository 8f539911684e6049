"""The probe worker of `sandbox_status()` (standard library only): reports what it sees, echoes the rest.

Answers b"check" with JSON facts measured inside the jail (who it is, whether it can fork or open a
socket, how big /tmp is, whether any host path shows through); every other payload comes back as is
(the echo worker of the benchmark).
"""

from __future__ import annotations

import errno
import json
import os

from autotts.sandbox import _frames

HOST_PATHS = ("/etc/passwd", "/etc/hostname", "/proc/1", "/home", "/work", "/var", "/run", "/sys", "/usr/bin/env")


def _attempt(action) -> str:
    """'allowed', or the errno name of the refusal."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "allowed"


def _fork() -> None:
    if os.fork() == 0:
        os._exit(0)
    os.wait()


def _socket() -> None:
    import socket

    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()


def check() -> dict:
    """The facts `sandbox_status()` checks."""
    tmp = os.statvfs("/tmp")
    return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "root": sorted(os.listdir("/")),
            "sees_host": any(os.path.exists(p) for p in HOST_PATHS), "fork": _attempt(_fork),
            "socket": _attempt(_socket), "tmp_bytes": tmp.f_blocks * tmp.f_frsize}


def _handle(payload: bytes) -> bytes:
    return json.dumps(check()).encode() if payload == b"check" else payload


def main() -> None:
    _frames.serve(_handle)

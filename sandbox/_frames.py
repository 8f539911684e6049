"""Length-prefixed frames: the only format that crosses the jail wall (standard library only).

A frame is a 4-byte big-endian length followed by that many bytes. The payload is opaque bytes (the
callers put JSON in it, never pickle: the trusted side must not deserialize anything executable).

This module is bound read-only into every jail, so the worker side (`read_frame`, `write_frame`,
`serve`) imports nothing outside the standard library. The bootstrap moves the channel to two private
descriptors (`CHANNEL_IN`, `CHANNEL_OUT`) and points fds 0 and 1 at /dev/null and stderr, so code that
prints or reads stdin cannot corrupt or steal frames.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

__all__ = ["CHANNEL_IN", "CHANNEL_OUT", "HEADER", "READY", "read_frame", "serve", "write_frame"]

HEADER = struct.Struct("!I")
CHANNEL_IN = 3   # requests from the parent (the original stdin)
CHANNEL_OUT = 4  # replies to the parent (the original stdout)
READY = b"autotts-sandbox-ready"  # the bootstrap's first frame, once the entry module imported


def _read_exact(fd: int, n: int) -> bytes | None:
    """Exactly `n` bytes from `fd`, or None at end of file before the first byte."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise EOFError(f"channel closed inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int = CHANNEL_IN) -> bytes | None:
    """The next frame's payload, or None when the parent closed the channel."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return _read_exact(fd, size) or b""


def write_frame(payload: bytes, fd: int = CHANNEL_OUT) -> None:
    """Send one frame (header and payload) completely."""
    view = memoryview(HEADER.pack(len(payload)) + bytes(payload))
    while view:
        view = view[os.write(fd, view):]


def serve(handler: Callable[[bytes], bytes]) -> None:
    """Answer every request frame with `handler(payload)` until the parent closes the channel."""
    while (request := read_frame()) is not None:
        write_frame(handler(request))

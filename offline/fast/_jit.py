"""Whether the replay kernels are compiled, and the decorator that compiles them.

The kernels are written in the subset of Python that numba compiles. With numba installed (the
`fast` extra) they are compiled once and cached on disk next to the sources; without it, or with
``AUTOTTS_FAST=pure``, the very same functions run as plain Python on lists (slower, same results).
Importing this module imports numba: only the fast path itself does, when a built-in is replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._mode import MODE

__all__ = ["JIT", "njit"]

_numba: Any = None
if MODE in ("auto", "1", "jit"):
    try:
        import numba as _numba
    except ImportError:  # the optional `fast` extra is absent: plain Python kernels
        if MODE == "jit":
            raise
JIT = _numba is not None


def njit(fn: Callable | None = None, *, inline: bool = False) -> Any:
    """Compile `fn` (no Python objects, no fast-math, so float results are bit-identical) or keep it.

    `inline=True` inlines a small helper into its callers at numba's level, which also spares the
    reference counting of every array argument at each call.
    """
    if fn is None:
        return lambda f: njit(f, inline=inline)
    if _numba is None:
        return fn
    options = {"nogil": True, "fastmath": False, "inline": "always" if inline else "never"}
    try:
        return _numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache location at all: compile in every process instead
        return _numba.njit(cache=False, **options)(fn)

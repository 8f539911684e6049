"""`AUTOTTS_FAST`: how the fast path runs, read once (without importing numba).

``auto`` (default): compiled with numba when installed, else plain Python; ``jit``: numba required;
``pure``: plain Python even with numba installed; ``0`` / ``off``: no fast path at all.
"""

from __future__ import annotations

import os

from autotts.controllers.errors import AutoTTSError

__all__ = ["ENABLED", "MODE"]

MODE = os.environ.get("AUTOTTS_FAST", "auto").strip().lower() or "auto"
if MODE not in ("auto", "1", "jit", "pure", "0", "off"):
    raise AutoTTSError(f"environment variable AUTOTTS_FAST must be auto, jit, pure or 0, got {MODE!r}")
ENABLED = MODE not in ("0", "off")

"""Which host paths make up a Python installation, and where a jailed interpreter sees them.

Exactly what ``python -S -s`` imports from (its sys.path: the stdlib and lib-dynload), with any
site-packages folder inside them masked, plus the interpreter itself and the shared libraries that it
and its extension modules link against (found with ``ldd``). Everything under the interpreter's prefix
is moved to `PREFIX` inside (so a pyenv install under /root shows no /root; Python finds its stdlib
relative to its executable); a library folder is bound whole at its own path (so what the C library
loads at run time, such as libgcc_s for thread exit, is there too), unless a site-packages folder lies
inside it (a prefix's lib/, as with pyenv): then only the library file is, found via LD_LIBRARY_PATH.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PythonView", "python_view"]

_QUERY = ("import json, os, sys, sysconfig; print(json.dumps({'executable': os.path.realpath(sys.executable), "
          "'prefix': os.path.realpath(sys.base_prefix), 'path': sys.path, "
          "'site': sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')}), "
          "'version': '%d.%d.%d' % sys.version_info[:3]}))")
_LDD_PATH = re.compile(r"(?:=>\s+|^\s+)(/\S+)\s+\(0x", re.M)


PREFIX = "/python"


@dataclass(frozen=True, slots=True)
class PythonView:
    """The read-only binds (host path, jail path) and masked jail folders of one interpreter."""

    executable: str                     # jail path of the interpreter
    version: str
    binds: tuple[tuple[str, str], ...]  # files and folders, bound read-only
    masks: tuple[str, ...]              # site-packages folders inside `binds`, hidden under an empty tmpfs
    library_path: str                   # LD_LIBRARY_PATH inside ('' when not needed)


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _shared_libraries(files: list[str]) -> set[str]:
    """Absolute paths of the shared libraries (and the dynamic loader) that `files` link against."""
    if not files:
        return set()
    ldd = shutil.which("ldd") or "/usr/bin/ldd"
    out = subprocess.run([ldd, *files], capture_output=True, text=True, timeout=60, env={"LC_ALL": "C"}).stdout
    return set(_LDD_PATH.findall(out))


@functools.cache
def python_view(python: str) -> PythonView:
    """The view of interpreter `python` (queried once: it is run with ``-S -s`` to print its paths)."""
    info = json.loads(subprocess.run([python, "-S", "-s", "-c", _QUERY], capture_output=True, text=True,
                                     check=True, timeout=60, env={"LC_ALL": "C"}).stdout)
    executable, prefix = info["executable"], info["prefix"]

    def moved(host: str) -> str:
        return PREFIX + host[len(prefix):] if _inside(host, [prefix]) else host

    path_dirs = sorted({os.path.realpath(p) for p in info["path"] if p and os.path.isdir(p)})
    extensions = [str(f) for d in path_dirs for f in Path(d).glob("*.so")]
    site = [os.path.realpath(s) for s in info["site"]]
    binds: dict[str, str] = {os.path.realpath(d): moved(os.path.realpath(d)) for d in path_dirs}
    binds[executable] = f"{PREFIX}/bin/{os.path.basename(executable)}" if not _inside(executable, [prefix]) \
        else moved(executable)
    library_dirs: set[str] = set()
    for lib in _shared_libraries([executable, *extensions]):
        folder = os.path.dirname(lib)
        if any(_inside(s, [os.path.realpath(folder)]) for s in site):
            binds[os.path.realpath(lib)] = moved(os.path.realpath(lib))
            library_dirs.add(os.path.dirname(moved(os.path.realpath(lib))))
        else:
            binds[folder] = folder
    folders = [h for h in binds if os.path.isdir(h)]
    kept = sorted((h, j) for h, j in binds.items()  # drop what a bound folder already shows at the same place
                  if not any(h != f and _inside(h, [f]) and j == binds[f] + h[len(f):] for f in folders))
    masks = tuple(moved(s) for s in site if _inside(s, path_dirs) and os.path.isdir(s))
    return PythonView(binds[executable], info["version"], tuple(kept), masks, ":".join(sorted(library_dirs)))

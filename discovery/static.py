"""A first, cheap look at candidate source before any process is started.

Controllers need the SDK and a little of the standard library, nothing else: importing anything
outside `ALLOWED_IMPORTS`, or reaching for the escape hatches of the language (`__import__`,
`eval`, `open`, `__subclasses__`, ...), is reported at once with the line number. This is a
convenience and a first layer only; the sandbox enforces the same rules at run time.

>>> problems("import os\\nfrom autotts.controllers import Branch\\n")
["line 1: import of forbidden module 'os' (allowed: autotts.controllers, ...)"]
"""

from __future__ import annotations

import ast
import threading

__all__ = ["ALLOWED_IMPORTS", "problems"]

ALLOWED_IMPORTS = ("autotts.controllers", "__future__", "math", "collections", "itertools", "functools",
                   "statistics", "dataclasses", "typing", "heapq", "bisect", "operator", "fractions", "enum", "re")
FORBIDDEN_NAMES = frozenset({"__import__", "eval", "exec", "compile", "open", "input", "breakpoint", "globals",
                             "locals", "vars", "__builtins__", "__loader__", "__spec__", "getattr", "setattr",
                             "delattr"})
FORBIDDEN_ATTRS = frozenset({"__subclasses__", "__globals__", "__code__", "__builtins__", "__bases__", "__mro__",
                             "__closure__", "__getattribute__", "__reduce__", "__reduce_ex__", "__loader__",
                             "__spec__", "__import__", "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame"})


# CPython 3.11's AST constructor keeps its recursion depth in shared state: two threads parsing at once can
# fail with "SystemError: AST constructor recursion depth mismatch" (seen with discovery's parallel jobs).
_PARSE_LOCK = threading.Lock()


def _allowed(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in ALLOWED_IMPORTS)


def problems(source: str, *, max_chars: int = 100_000) -> list[str]:
    """Everything wrong with `source` that can be seen without running it (empty when fine)."""
    if len(source) > max_chars:
        return [f"source is {len(source):,} characters; the limit is {max_chars:,}"]
    try:
        with _PARSE_LOCK:
            tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"line {exc.lineno}: syntax error: {exc.msg}"]
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _allowed(alias.name):
                    found.append(f"line {line}: import of forbidden module {alias.name!r} "
                                 f"(allowed: {ALLOWED_IMPORTS[0]}, ...)")
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module or not _allowed(node.module):
                found.append(f"line {line}: import of forbidden module {'.' * node.level}{node.module or ''!r} "
                             f"(allowed: {ALLOWED_IMPORTS[0]}, ...)")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"line {line}: use of {node.id!r} is not allowed in controller code")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRS:
            found.append(f"line {line}: attribute {node.attr!r} is not allowed in controller code")
    return found

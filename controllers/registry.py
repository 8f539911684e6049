"""Controller specs and `load()`: one way to name a controller everywhere (CLI, config, requests).

A spec is a built-in name with optional parameters, ``cmc:beta=0.5`` or ``asc:threshold=0.9,n=32``,
or a path to an artifact (optionally with parameters after the last ``:``).

>>> load("asc:n=32").params["n"]
32
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Controller
from .builtins import BUILTINS
from .errors import ControllerSpecError

__all__ = ["available", "load", "parse_spec"]


def available() -> list[str]:
    """Names of the built-in controllers."""
    return sorted(BUILTINS)


def parse_spec(spec: str, *, paths: bool = True) -> tuple[str, dict[str, str]]:
    """``"name:k=v,k2=v2"`` → (name, {k: v}); values stay strings until the controller types them.

    With ``paths=False`` (specs from requests) the file system is never consulted, so a spec can not
    tell whether a file exists.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ControllerSpecError("empty controller spec")
    name, params = spec.strip(), {}
    head, sep, tail = name.rpartition(":")
    if sep and head and ("=" in tail or head in BUILTINS or (paths and Path(head).exists())):
        name = head
        for part in tail.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ControllerSpecError(f"controller spec {spec!r}: expected key=value, got {part!r}")
            params[key.strip()] = value.strip()
    return name, params


def _resolve(name: str, allow_code: bool) -> type[Controller]:
    if name in BUILTINS:
        return BUILTINS[name]
    if Path(name).exists():
        from .artifact import load_artifact_class

        return load_artifact_class(name, allow_code=allow_code)
    raise ControllerSpecError(f"unknown controller {name!r}; available: {', '.join(available())} "
                              "(or a path to a controller artifact)")


def load(spec: str | type[Controller] | Controller, *, allow_code: bool = False, **overrides: Any) -> Controller:
    """A ready controller from a spec string, class or instance (`overrides` win over the spec)."""
    if isinstance(spec, Controller):
        if overrides:
            raise ControllerSpecError("cannot override parameters of a controller instance")
        return spec
    if isinstance(spec, type) and issubclass(spec, Controller):
        cls, params = spec, {}
    else:
        name, params = parse_spec(spec)
        cls = _resolve(name, allow_code)
    params.update(overrides)
    return cls(**params)

"""Which controller runs a request, and with which β: one documented precedence.

1. the request body's ``tts.controller`` (e.g. ``extra_body={"tts": {"controller": "cmc", "beta": 0.5}}``),
2. the ``X-TTS-Controller`` header,
3. the ``model`` field: a configured alias (``tts-cmc``) or ``MODEL@CONTROLLER`` (``qwen3-8b@esc``),
4. with A/B arms configured (server/arms.py): the arm named by ``tts.arm``, else the ``X-TTS-Arm`` header,
5. with A/B arms: the sticky arm of the user key (``user`` field, else ``X-User``; else the completion id),
6. the configured default (`GatewayConfig.controller`).

``tts.beta`` and ``tts.params`` apply to whichever controller wins. A value is a configured alias or a
built-in spec (``asc:threshold=0.9,n=32``); artifact paths are accepted only through aliases the
operator configured, never from a request. ``none`` means plain pass-through (one engine call).
Controllers are stateless, so one instance per (spec, β, params) is cached and shared.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autotts.controllers.base import Controller
from autotts.controllers.builtins import BUILTINS
from autotts.controllers.errors import AutoTTSError
from autotts.controllers.registry import load, parse_spec

from .arms import Arm, ArmAssigner
from .errors import BadRequest
from .sandboxed import ServedArtifact

__all__ = ["HEADER", "NONE", "ControllerSelector", "Selection"]

HEADER = "X-TTS-Controller"
NONE = "none"


@dataclass(frozen=True)
class Selection:
    controller: Controller | None  # None: pass-through
    name: str  # controller name ("none" for pass-through)
    source: str  # body | header | model | arm | assigned | default
    arm: str  # metrics label: the A/B arm, else the alias used, else the source
    model: str | None  # the model part of the request's `model` field (alias removed)
    options: tuple[tuple[str, Any], ...] = ()  # the arm's extractor / aggregator / response, if it sets them
    passthrough: str | None = None  # why the request goes to the engine untouched (server/request_kind.py)

    @property
    def spec(self) -> str:
        return self.controller.spec if self.controller is not None else NONE

    @property
    def version(self) -> str:
        return str(self.controller.version) if self.controller is not None else "-"


class ControllerSelector:
    def __init__(self, default: str, aliases: dict[str, str], *, allow_code: bool = False,
                 cache_size: int = 256, arms: list[Arm] | None = None, salt: str = "autotts-ab",
                 classes: Mapping[str, type[Controller] | ServedArtifact] | None = None) -> None:
        self.default = default
        self.aliases = dict(aliases)
        self.allow_code = allow_code
        # artifact path → its class, loaded (and hash-checked) once by server/lifecycle.py, so this selector
        # never reads the artifact again: files changed on disk cannot reach it, only a reload can
        self.classes = dict(classes or {})
        self.cache_size = cache_size
        self.arms = ArmAssigner(arms or [], salt)
        self._cache: OrderedDict[tuple, Controller] = OrderedDict()
        self.select(None, None, None)  # a bad default, alias or arm fails at start-up, not per request
        for alias in self.aliases:
            self.select(None, None, alias)
        for arm in self.arms.arms:
            self.select({"arm": arm.name}, None, None)

    def select(self, tts: dict[str, Any] | None, header: str | None, model: str | None, *,
               arm_header: str | None = None, user_key: str | None = None) -> Selection:
        tts = tts or {}
        base_model, model_choice = _split_model(model, self.aliases)
        for source, value, param in (("body", tts.get("controller"), "tts.controller"),
                                     ("header", header, HEADER),
                                     ("model", model_choice, "model")):
            if value:
                return self._build(str(value).strip(), source, param, tts, base_model)
        if self.arms:
            arm, source = None, "arm"
            for value, param in ((tts.get("arm"), "tts.arm"), (arm_header, "X-TTS-Arm")):
                if value:
                    arm = self.arms.by_name.get(str(value).strip())
                    if arm is None:
                        raise BadRequest(f"{param}: unknown arm {value!r}; arms: "
                                         f"{', '.join(self.arms.by_name)}", param=param)
                    break
            if arm is None:
                arm, source = self.arms.assign(user_key or ""), "assigned"
            return self._build(arm.controller, source, "arms", tts, base_model, arm=arm)
        return self._build(self.default, "default", "controller", tts, base_model)

    def resolve(self, value: str, *, arm: Arm | None = None) -> Selection:
        """An operator-configured value (the default, an alias, an arm's controller) as it serves."""
        return self._build(value, "default", "controller", {}, None, arm)

    def _build(self, value: str, source: str, param: str, tts: dict[str, Any], model: str | None,
               arm: Arm | None = None) -> Selection:
        label, trusted = source, source == "default" or arm is not None
        if value in self.aliases:
            label, value, trusted = value, self.aliases[value], True
        overrides = dict(tts.get("params") or {})
        if arm is not None:
            label = arm.name
            if arm.beta is not None:
                overrides["beta"] = arm.beta
        if tts.get("beta") is not None:
            overrides["beta"] = tts["beta"]
        if value == NONE:
            if overrides:
                raise BadRequest("controller 'none' (pass-through) takes no beta or params", param="tts")
            return Selection(None, NONE, source, label, model, arm.options if arm else ())
        try:  # a spec from a request never touches the file system
            name, spec_params = parse_spec(value, paths=trusted)
        except AutoTTSError as exc:
            raise BadRequest(f"{param}: {exc}", param=param) from None
        if not trusted and name not in BUILTINS:
            known = ", ".join(sorted([*BUILTINS, NONE]))
            raise BadRequest(f"{param}: unknown controller {name!r}; available: {known}; aliases: "
                             f"{', '.join(sorted(self.aliases)) or 'none'}", param=param)
        key = (value, tuple(sorted((k, repr(v)) for k, v in overrides.items())), trusted)
        controller = self._cache.get(key)
        if controller is None:
            try:
                served = self.classes.get(name) if trusted else None
                if isinstance(served, ServedArtifact):
                    controller = served.instance(**{**spec_params, **overrides})
                elif served is not None:
                    controller = load(served, **{**spec_params, **overrides})
                else:
                    controller = load(value, allow_code=self.allow_code and trusted, **overrides)
            except AutoTTSError as exc:
                where = "tts.beta" if "beta" in str(exc) and "beta" in overrides else param
                raise BadRequest(f"{where}: {exc}", param=where) from None
            except TypeError as exc:
                raise BadRequest(f"{param}: {exc}", param=param) from None
            self._cache[key] = controller
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return Selection(controller, controller.name, source, label, model, arm.options if arm else ())


def _split_model(model: str | None, aliases: dict[str, str]) -> tuple[str | None, str | None]:
    """``alias`` → (None, alias); ``base@choice`` → (base, choice); anything else → (model, None)."""
    if not model:
        return None, None
    if model in aliases:
        return None, model
    base, sep, choice = model.partition("@")
    if sep and choice:
        return base or None, choice
    return model, None

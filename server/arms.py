"""A/B arms: named controllers with weights, assigned to users by a stable hash.

An arm is ``{name, controller, beta, weight}`` from the gateway config (``arms:``), optionally with the
``extractor``, ``aggregator`` and ``response`` its requests use (server/jobs.py checks them). A request's user key
(the body's ``user`` field, else the ``X-User`` header) is hashed with sha256 of ``"<salt>:<key>"`` to a
number in [0, 1) and mapped onto the arms' cumulative weights. The hash depends only on the salt, the key
and the arm list, so every gateway replica puts a user in the same arm without sharing any state. A
request without a user key is assigned by its completion id (no stickiness). Arm controllers come from
the operator's config, so they may be artifact paths (trusted like aliases).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from autotts.controllers.aggregators import parse_aggregator
from autotts.controllers.extractors import parse_extractor

__all__ = ["ARM_HEADER", "USER_HEADER", "VOTE_FIELDS", "Arm", "ArmAssigner", "check_vote_options", "parse_arms",
           "unit_hash"]

USER_HEADER = "X-User"
ARM_HEADER = "X-TTS-Arm"
_FIELDS = ("name", "controller", "beta", "weight", "extractor", "aggregator", "response")
VOTE_FIELDS = ("extractor", "aggregator", "response")  # how the arm's requests read, vote and answer


@dataclass(frozen=True)
class Arm:
    name: str
    controller: str  # a built-in spec, an alias or an artifact path
    beta: float | None = None
    weight: float = 1.0
    options: tuple[tuple[str, Any], ...] = ()  # (field, value) of VOTE_FIELDS the arm sets


def parse_arms(raw: list[Any]) -> list[Arm]:
    """Validate the config's ``arms`` list; a ValueError names ``arms[i].field`` and the bad value."""
    arms: list[Arm] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"arms[{i}] must be a mapping with {', '.join(_FIELDS)}, got {entry!r}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ValueError(f"arms[{i}].{unknown[0]} is not a field of an arm (known: {', '.join(_FIELDS)})")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"arms[{i}].name must be a non-empty string without surrounding spaces, got {name!r}")
        if name in (a.name for a in arms):
            raise ValueError(f"arms[{i}].name {name!r} is used by another arm")
        controller = entry.get("controller")
        if not isinstance(controller, str) or not controller.strip():
            raise ValueError(f"arms[{i}].controller must be a controller spec or artifact path, got {controller!r}")
        beta = entry.get("beta")
        if beta is not None and (isinstance(beta, bool) or not isinstance(beta, int | float)
                                 or not math.isfinite(beta)):
            raise ValueError(f"arms[{i}].beta must be a number or null, got {beta!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
                or weight <= 0:
            raise ValueError(f"arms[{i}].weight must be a number > 0, got {weight!r}")
        options = tuple((k, entry[k]) for k in VOTE_FIELDS if entry.get(k) is not None)
        check_vote_options(dict(options), f"arms[{i}].")
        arms.append(Arm(name, controller.strip(), None if beta is None else float(beta), float(weight), options))
    return arms


def check_vote_options(options: dict[str, Any], where: str) -> None:
    """Check an arm's or the config's extractor / aggregator / response; a ValueError names the field."""
    if options.get("extractor") is not None:
        parse_extractor(options["extractor"], f"{where}extractor")
    if options.get("aggregator") is not None:
        parse_aggregator(options["aggregator"], f"{where}aggregator")
    response = options.get("response")
    if response is not None and response not in ("full", "answer"):
        raise ValueError(f"{where}response must be 'full' or 'answer', got {response!r}")


def unit_hash(salt: str, key: str) -> float:
    """sha256("<salt>:<key>") as a number in [0, 1): the same on every machine and Python version."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ArmAssigner:
    """Maps a user key to an arm by weighted buckets of `unit_hash`."""

    def __init__(self, arms: list[Arm], salt: str = "autotts-ab") -> None:
        self.arms = list(arms)
        self.salt = salt
        self.by_name = {a.name: a for a in self.arms}
        total = sum(a.weight for a in self.arms)
        edges, acc = [], 0.0
        for arm in self.arms:
            acc += arm.weight / total if total else 0.0
            edges.append(acc)
        self._edges = edges

    def __bool__(self) -> bool:
        return bool(self.arms)

    def assign(self, key: str) -> Arm:
        u = unit_hash(self.salt, key)
        for arm, edge in zip(self.arms, self._edges, strict=True):
            if u < edge:
                return arm
        return self.arms[-1]  # float rounding at the top edge

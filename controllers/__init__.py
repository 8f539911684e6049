"""autotts.controllers: the controller SDK shared by replay, discovery and serving.

Pure Python (+ the standard library): observations, the five actions, the `Controller` contract
with β schedules, vote aggregation and answer normalisation, the built-in controllers and the
artifact format. No engine, HTTP or Arrow code is imported here.

>>> from autotts.controllers import load
>>> load("cmc:beta=0.5").knobs["max_branches"]
34
"""

from importlib import import_module

from .actions import Action, Answer, Branch, Continue, Probe, Prune
from .aggregate import first_finish, majority, top_two, vote_counts, weighted
from .base import Controller, GeneratorController, Param, check_schedule
from .confidence import beta_confidence
from .errors import (
    ArtifactError,
    AutoTTSError,
    ControllerSpecError,
    EpisodeError,
    IllegalActionError,
)
from .observation import BranchView, Observation

TYPE_CHECKING = False  # (not `typing`'s: importing typing costs a fresh worker milliseconds)
if TYPE_CHECKING:
    from .aggregators import Aggregator, parse_aggregator
    from .artifact import load_artifact_class, read_artifact, save_artifact
    from .builtins import BUILTINS
    from .extractors import Extractor, parse_extractor
    from .normalize import answer_key, is_correct
    from .registry import available, load, parse_spec

# Loaded on first use: the artifact format, the built-ins, the registry, the aggregators and extractors
# import much of the standard library (dataclasses, inspect, re), which a sandboxed worker (started afresh
# for every group of episodes) never needs: its start-up CPU is most of what a fresh worker costs.
_LAZY = {"BUILTINS": ".builtins", "load_artifact_class": ".artifact", "read_artifact": ".artifact",
         "save_artifact": ".artifact", "available": ".registry", "load": ".registry", "parse_spec": ".registry",
         "Aggregator": ".aggregators", "parse_aggregator": ".aggregators", "Extractor": ".extractors",
         "parse_extractor": ".extractors", "answer_key": ".normalize", "is_correct": ".normalize"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "BUILTINS",
    "Action",
    "Aggregator",
    "Answer",
    "ArtifactError",
    "AutoTTSError",
    "Branch",
    "BranchView",
    "Continue",
    "Controller",
    "ControllerSpecError",
    "EpisodeError",
    "Extractor",
    "GeneratorController",
    "IllegalActionError",
    "Observation",
    "Param",
    "Probe",
    "Prune",
    "answer_key",
    "available",
    "beta_confidence",
    "check_schedule",
    "first_finish",
    "is_correct",
    "load",
    "load_artifact_class",
    "majority",
    "parse_aggregator",
    "parse_extractor",
    "parse_spec",
    "read_artifact",
    "save_artifact",
    "top_two",
    "vote_counts",
    "weighted",
]

"""autotts.controllers: the controller SDK shared by replay, discovery and serving.

Pure Python (+ the standard library): observations, the five actions, the `Controller` contract
with β schedules, vote aggregation and answer normalisation, the built-in controllers and the
artifact format. No engine, HTTP or Arrow code is imported here.

>>> from autotts.controllers import load
>>> load("cmc:beta=0.5").knobs["max_branches"]
34
"""

from .actions import Action, Answer, Branch, Continue, Probe, Prune
from .aggregate import first_finish, majority, top_two, vote_counts, weighted
from .aggregators import Aggregator, parse_aggregator
from .artifact import load_artifact_class, read_artifact, save_artifact
from .base import Controller, GeneratorController, Param, check_schedule
from .builtins import BUILTINS
from .confidence import beta_confidence
from .errors import (
    ArtifactError,
    AutoTTSError,
    ControllerSpecError,
    EpisodeError,
    IllegalActionError,
)
from .extractors import Extractor, parse_extractor
from .normalize import answer_key, is_correct
from .observation import BranchView, Observation
from .registry import available, load, parse_spec

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

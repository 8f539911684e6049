"""The hand-designed controllers of the literature, written from their described behaviour."""

import inspect
import re
import sys

from .asc import AdaptiveConsistency
from .cmc import ConfidenceMomentum
from .esc import EarlyStoppingConsistency
from .parallel_probe import ParallelProbe
from .sc import SelfConsistency

BUILTINS = {c.name: c for c in (SelfConsistency, AdaptiveConsistency, EarlyStoppingConsistency,
                                ParallelProbe, ConfidenceMomentum)}

__all__ = ["BUILTINS", "AdaptiveConsistency", "ConfidenceMomentum", "EarlyStoppingConsistency", "ParallelProbe",
           "SelfConsistency", "plain_source"]


def plain_source(name: str) -> str:
    """The source of built-in `name` as a stand-alone controller module (what an artifact holds): a
    starting point for your own, and how the built-ins are run as if a model had written them."""
    module = sys.modules[BUILTINS[name].__module__]
    return re.sub(r"^from \.\.(\w+) import", r"from autotts.controllers.\1 import", inspect.getsource(module),
                  flags=re.M)

"""The hand-designed controllers of the literature, written from their described behaviour."""

from .asc import AdaptiveConsistency
from .cmc import ConfidenceMomentum
from .esc import EarlyStoppingConsistency
from .parallel_probe import ParallelProbe
from .sc import SelfConsistency

BUILTINS = {c.name: c for c in (SelfConsistency, AdaptiveConsistency, EarlyStoppingConsistency,
                                ParallelProbe, ConfidenceMomentum)}

__all__ = [
                                "BUILTINS",
                                "AdaptiveConsistency",
                                "ConfidenceMomentum",
                                "EarlyStoppingConsistency",
                                "ParallelProbe",
                                "SelfConsistency",
]

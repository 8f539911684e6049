"""Vote confidence from the Beta posterior, exact for integer vote counts.

`beta_confidence(v1, v2)` is 1 − I_{1/2}(v1+1, v2+1): the probability under a Beta(v1+1, v2+1)
posterior that the leader's share exceeds one half. For integer counts the regularised incomplete
beta is a finite binomial sum, computed here in integers and divided once (correctly rounded),
and cached: vote counts are small and repeat constantly.

>>> beta_confidence(1, 0)
0.75
>>> beta_confidence(3, 3)
0.5
"""

from __future__ import annotations

from functools import lru_cache
from math import comb

__all__ = ["beta_confidence"]


@lru_cache(maxsize=65536)
def beta_confidence(v1: int, v2: int) -> float:
    """P(p > 1/2) for p ~ Beta(v1 + 1, v2 + 1), i.e. P(Binomial(v1 + v2 + 1, 1/2) <= v1)."""
    if v1 < 0 or v2 < 0:
        raise ValueError(f"vote counts must be >= 0, got {v1}, {v2}")
    trials = v1 + v2 + 1
    return sum(comb(trials, j) for j in range(v1 + 1)) / (1 << trials)

"""autotts.offline: replay stores, the replay environment, evaluation and collection.

Recorded trajectories (with the answers forced out of them every Δ tokens) are replayed so that a
controller can be scored on thousands of episodes per second without running a model.
"""

from .env import ReplayEnv
from .episode import EpisodeResult, run_episode
from .store import ReplayStore, StoreError, load_store

__all__ = ["EpisodeResult", "ReplayEnv", "ReplayStore", "StoreError", "load_store", "run_episode"]

"""Token engines: one async protocol (`TokenEngine`) over vLLM-over-HTTP and in-process vLLM.

Engine modules import their heavy clients lazily; `make_engine` picks one by name.
"""

from .base import GenerateResult, Sampling, TokenEngine

__all__ = ["GenerateResult", "Sampling", "TokenEngine"]

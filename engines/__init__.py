"""autotts.engines: where tokens come from, for the gateway and for `autotts collect` alike.

One async protocol (`TokenEngine`: token IDs in, token IDs out, cancellation = abort) with declared
optional `Capabilities`, over vLLM's HTTP server, SGLang's native API and vLLM's in-process `AsyncLLM`;
`ReplicaPool` spreads requests over replicas of one engine. Above it, `TokenBranchBackend` runs the
episode machine's branch work on any engine (the executor's `BranchBackend` view), and `answers` reads
answers out of generated text. `FakeEngine` and the scriptable `MockEngine` need no model. Imports
nothing of autotts but the controller SDK; heavy clients (httpx, vllm) load with the adapter using them.
"""

from .answers import final_answer, probe_answer, split_reasoning
from .backends import BranchBackend, Ledger, TokenBranchBackend
from .base import Capabilities, GenerateResult, Passthrough, Sampling, TokenEngine, branch_seed
from .errors import EngineDown, EngineError, EngineGarbage, EngineRejected, EngineTimeout, ReplicaMismatch
from .fake import FakeEngine
from .mock import GenerateRequest, MockEngine

__all__ = [
    "BranchBackend",
    "Capabilities",
    "EngineDown",
    "EngineError",
    "EngineGarbage",
    "EngineRejected",
    "EngineTimeout",
    "FakeEngine",
    "GenerateRequest",
    "GenerateResult",
    "Ledger",
    "MockEngine",
    "Passthrough",
    "ReplicaMismatch",
    "Sampling",
    "TokenBranchBackend",
    "TokenEngine",
    "branch_seed",
    "final_answer",
    "probe_answer",
    "split_reasoning",
]

"""The replay engine: recorded trajectories served as if a model were decoding them live.

A request whose last user message is, whitespace aside, a question of a loaded replay store is
answered from that question's recorded branches, the request's `seed` choosing the branch order
(the shuffle seed of the offline evaluation). `ReplayBranchBackend` produces each segment and probe
with the episode machine's recorded-trajectory rules (`recorded_units`, `recorded_probe`: the same
code `autotts eval` runs, no copy of them), so an episode through the gateway spends exactly the
tokens and returns exactly the answer of the offline episode. Unknown questions are a clear 400,
never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from autotts.controllers.episode import Recorded, Unit, recorded_probe, recorded_units
from autotts.controllers.observation import BranchView
from autotts.engines.backends import Ledger
from autotts.offline.env import recorded_branch
from autotts.offline.store import ReplayStore, load_store

from .errors import BadRequest, ModelNotFound, UnknownQuestion

__all__ = ["ReplayBranchBackend", "ReplayCatalog", "bundled_stores", "estimate_tokens"]


def bundled_stores() -> list[Path]:
    """The Parquet stores shipped with autotts (Qwen3 0.6B–8B on AIME 2024/2025)."""
    from autotts.offline.evaluate import bundled_data_dir

    return sorted(bundled_data_dir().glob("*/*.parquet"))


def estimate_tokens(text: str) -> int:
    """A tokenizer-free prompt-length estimate (≈4 characters per token) for replay `usage`."""
    return max(1, (len(text) + 3) // 4)


class ReplayCatalog:
    """Loaded stores indexed by model (case-insensitive) and question text."""

    def __init__(self, stores: Iterable[ReplayStore], default_model: str | None = None) -> None:
        self.stores = list(stores)
        if not self.stores:
            raise BadRequest("the replay engine needs at least one store")
        self.models: dict[str, str] = {}
        self.index: dict[str, dict[str, tuple[ReplayStore, int]]] = {}
        for store in self.stores:
            self.models.setdefault(store.model.lower(), store.model)
            questions = self.index.setdefault(store.model, {})
            for qi, text in enumerate(store.questions):
                questions.setdefault(text.strip(), (store, qi))
        self.default_model = self.resolve_model(default_model) if default_model else self.stores[-1].model

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], default_model: str | None = None) -> ReplayCatalog:
        from autotts.offline.importer import find_data_files

        return cls([load_store(p) for p in find_data_files(list(paths))], default_model)

    def resolve_model(self, name: str | None) -> str:
        if not name:
            return self.default_model
        model = self.models.get(name.lower())
        if model is None:
            raise ModelNotFound(f"model {name!r} has no replay store; available: "
                                f"{', '.join(sorted(self.index))}", param="model")
        return model

    def find(self, model: str, question: str) -> tuple[ReplayStore, int]:
        hit = self.index[model].get(question.strip())
        if hit is None:
            names = ", ".join(sorted({s.dataset for s in self.stores if s.model == model}))
            raise UnknownQuestion(
                f"the replay engine answers only questions recorded in its stores ({model}: {names}); "
                f"the last user message is not one of them: {question.strip()[:80]!r}", param="messages")
        return hit


class ReplayBranchBackend:
    """One (store, question, seed) episode's branches, decoded from the recorded trajectories."""

    concurrent = False  # every call returns at once; tests wrap it with delays to exercise concurrency
    sampling = None  # nothing is sampled: the seed picks the recorded branches' order

    def __init__(self, store: ReplayStore, question: int, seed: int, *, prompt_tokens: int,
                 kappa_probe: int = 0, max_branches: int | None = None) -> None:
        self.store, self.question, self.seed, self.kappa = store, question, seed, kappa_probe
        self.segment_tokens = store.segment_tokens
        available = store.n_branches(question)
        self.branches_available = available if max_branches is None else min(available, max_branches)
        self.prompt_tokens = prompt_tokens
        self.ledger = Ledger()
        self.on_call: Callable[[], None] | None = None
        self._tracks: dict[int, Recorded] = {}
        self._depth: dict[int, int] = {}

    def cap_tokens(self, budget: int) -> None:
        """Nothing to gate: replayed tokens cost nothing, the machine applies the budget exactly."""

    def open(self, branch: int) -> None:
        self._tracks[branch] = recorded_branch(self.store, self.question, self.seed, branch)
        self._depth[branch] = 0

    def _call(self, kind: str, unit: tuple) -> Unit:
        """Account one engine call that produced `unit`."""
        self.ledger.add(kind, self.prompt_tokens, unit[0], 0)
        if self.on_call is not None:
            self.on_call()
        return Unit(*unit)

    async def decode(self, branch: int, segments: int | None, probe: bool) -> list[Unit]:
        units = recorded_units(self._tracks[branch], self._depth[branch], segments, probe, self.segment_tokens,
                               self.kappa)
        out = [self._call("decode", unit) for unit in units]  # one call per segment, or one full read
        if out:
            self._depth[branch] = out[-1].depth
        return out

    async def probe(self, branch: int) -> list[Unit]:
        return [self._call("probe", recorded_probe(self._tracks[branch], self._depth[branch], self.kappa))]

    async def settle(self, running: set[int], final: bool = False) -> None:
        """Nothing runs ahead in replay."""

    async def finish(self, branch: int) -> None:
        """Nothing to decode: a recorded branch has no text to finish (the response is the answer sentence)."""

    async def text(self, branch: int, split=None) -> tuple[str | None, str | None, list[int]]:
        """(None, a note naming the recorded branch, []): replay stores keep answers and token counts, no text."""
        if branch not in self._tracks:
            return None, None, []
        probes, tokens, final = self._tracks[branch]
        return None, (f"[replay] {self.store.model}/{self.store.dataset} question {self.question}, recorded branch "
                      f"{branch} of seed {self.seed}: {tokens} tokens, {len(probes)} probes, final answer {final!r}. "
                      "Replay stores keep answers and token counts, not the reasoning text."), []

    async def ask(self, prompt: str, max_tokens: int) -> str:
        raise BadRequest("tts.aggregator: the judge aggregator asks the engine, and the replay engine has no model "
                         "to ask; use exact, normalized, math or semantic here", param="tts.aggregator")

    def decoded_tokens(self, view: BranchView) -> int:
        """The recorded tokens read so far: the branch's cost minus κ_probe per revealed probe."""
        reveals = len(view.answers) - (1 if view.finished else 0)
        return max(0, view.tokens - self.kappa * reveals)

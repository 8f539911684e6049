"""The replay engine: recorded trajectories served as if a model were decoding them live.

A request whose last user message is, whitespace aside, a question of a loaded replay store is
answered from that question's recorded branches, the request's `seed` choosing the branch order
(the shuffle seed of the offline evaluation). `ReplayBranchBackend` runs each segment and probe
through a private `ReplayEnv` (the same cost code as `autotts eval`, no copy of its rules), so an
episode through the gateway spends exactly the tokens and returns exactly the answer of the
offline episode. Unknown questions are a clear 400, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from autotts.controllers.actions import Continue, Probe
from autotts.offline.env import ReplayEnv, branch_order
from autotts.offline.store import ReplayStore, load_store

from .backends import Ledger, Unit
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
    """One (store, question, seed) episode's branches, decoded by the replay environment."""

    gate_budget = False  # replayed tokens cost nothing: budget rules are applied exactly at apply time
    concurrent = False  # every call returns at once; tests wrap it with delays to exercise concurrency

    def __init__(self, store: ReplayStore, question: int, seed: int, *, prompt_tokens: int,
                 kappa_probe: int = 0, max_branches: int | None = None) -> None:
        self.env = ReplayEnv(store, kappa_probe=kappa_probe, max_steps=2**62)
        self.env.reset(question, seed)
        self.store, self.question, self.seed, self.kappa = store, question, seed, kappa_probe
        self.segment_tokens = store.segment_tokens
        available = store.n_branches(question)
        self.branches_available = available if max_branches is None else min(available, max_branches)
        self.prompt_tokens = prompt_tokens
        self.ledger = Ledger()
        self.on_call: Callable[[], None] | None = None

    def open(self, branch: int) -> None:
        view = self.env.open_branch()
        if view.id != branch:
            raise RuntimeError(f"replay backend opened branch {view.id}, executor expected {branch}")

    def _run(self, action: Continue | Probe) -> Unit:
        env = self.env
        view = env.obs.branches[action.branch]
        tokens, answers, probes = view.tokens, len(view.answers), env.probes
        env.step([action])
        probe_tokens = self.kappa * (env.probes - probes)
        decode = view.tokens - tokens - probe_tokens
        self.ledger.add("probe" if type(action) is Probe else "decode", self.prompt_tokens,
                        decode + probe_tokens, 0)
        if self.on_call is not None:
            self.on_call()
        if type(action) is Probe:
            return Unit(probe=probe_tokens, reveal=view.latest)
        unit = Unit(decode=decode, probe=probe_tokens, depth=view.depth)
        if view.finished:
            unit.final = view.final
        elif len(view.answers) > answers:
            unit.reveal = view.latest
        return unit

    async def decode(self, branch: int, segments: int | None, probe: bool) -> list[Unit]:
        if segments is None and not probe:  # one full read: one unit, as in the environment
            return [self._run(Continue(branch, None, False))]
        view, units = self.env.obs.branches[branch], []
        left = -1 if segments is None else segments
        while left and not view.finished:  # segment by segment: the budget is checked before each
            units.append(self._run(Continue(branch, 1, probe)))
            left -= 1
        return units

    async def probe(self, branch: int) -> list[Unit]:
        return [self._run(Probe(branch))]

    async def reasoning(self, branch: int) -> str | None:
        if branch >= len(self.env.obs.branches):
            return None
        q = self.store.question(self.question)
        row = branch_order(len(q.tokens), self.seed)[branch]
        return (f"[replay] {self.store.model}/{self.store.dataset} question {self.question}, recorded branch "
                f"{row}: {q.tokens[row]} tokens, {len(q.probes[row])} probes, final answer {q.finals[row]!r}. "
                "Replay stores keep answers and token counts, not the reasoning text.")

"""The local explorer: an evolutionary search that composes mechanisms as code, no model, no key.

Candidates are recipes over the block library (`discovery.blocks`) rendered as plain controller
source. The seed recipes (cmc, recipes leaning towards the other built-ins, cmc with each new block
grafted on) are proposed first, `population` a round; then children of the best complete candidates
so far (rank-weighted parents): a block swapped, added or dropped, knobs moved, two parents crossed,
or a move against the failures their trace evidence shows. Every round's candidates are raced
together by the loop (`discovery.racing`). Proposals of round r depend only on `seed`, r and the
records of rounds before r, so a resumed run proposes exactly what the killed one did.
"""

from __future__ import annotations

import random
from typing import Any

from ..blocks import BLOCKS, Recipe, render, seed_recipes
from ..blocks.evolve import crossover, mutate
from ..evidence import diagnose
from ..history import eligible
from .base import Explorer, Session

__all__ = ["LocalExplorer"]

Proposal = tuple[Recipe, list[str], str]  # recipe, parent ids, what changed


class LocalExplorer(Explorer):
    name = "local"

    def __init__(self, *, seed: int = 0, population: int = 4, elite: int = 6, crossover_rate: float = 0.25,
                 mutation_rate: float = 0.3, mutation_scale: float = 0.12) -> None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        self.seed, self.population, self.elite = seed, population, elite
        self.crossover_rate, self.mutation_rate, self.mutation_scale = crossover_rate, mutation_rate, mutation_scale

    def describe(self) -> dict[str, Any]:
        return {"explorer": self.name, "seed": self.seed, "population": self.population, "elite": self.elite,
                "library": sorted(BLOCKS)}

    def _pool(self, earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Parents: the best complete candidates; raced-out ones fill in while few are complete."""
        mine = [r for r in earlier if r["status"] == "ok" and r.get("meta", {}).get("recipe")]
        ranked = sorted(mine, key=lambda r: (not eligible(r), -r["objective"], r["id"]))
        complete = [r for r in ranked if eligible(r)]
        return ranked[: max(2, min(self.elite, len(complete)))] if len(complete) < 2 else complete[: self.elite]

    def propose(self, round_no: int, earlier: list[dict[str, Any]]) -> list[Proposal]:
        """(recipe, parent ids, change) to evaluate in round `round_no`, given the records of earlier rounds."""
        rng = random.Random(f"autotts-local:{self.seed}:{round_no}")
        seen = {r["meta"]["recipe_key"] for r in earlier if r.get("meta", {}).get("recipe_key")}
        out: list[Proposal] = [(r, [], "seed recipe") for r in seed_recipes() if r.key() not in seen]
        out = out[: self.population]
        pool = self._pool(earlier)
        if not pool:
            base = seed_recipes()[0]
            while len(out) < self.population and len(out) < 50:
                child, what = mutate(base, rng, rate=self.mutation_rate, scale=self.mutation_scale)
                if child.key() not in seen | {r.key() for r, _, _ in out}:
                    out.append((child, [], f"variant of cmc: {what}"))
            return out
        parents = [(Recipe.from_json(r["meta"]["recipe"]), r) for r in pool]
        weights = [1.0 / (i + 1) for i in range(len(parents))]
        for _ in range(self.population * 50):
            if len(out) >= self.population:
                break
            (a, ra), = rng.choices(parents, weights)
            if len(parents) > 1 and rng.random() < self.crossover_rate:
                (b, rb), = rng.choices(parents, weights)
                child, what = crossover(a, b, rng)
                ids = sorted({ra["id"], rb["id"]})
                if child.key() in (a.key(), b.key()):
                    child, more = mutate(child, rng, rate=self.mutation_rate, scale=self.mutation_scale)
                    what += f"; {more}"
            else:
                child, what = mutate(a, rng, diagnosis=diagnose(ra.get("evidence")), rate=self.mutation_rate,
                                     scale=self.mutation_scale)
                ids = [ra["id"]]
            if child.key() not in seen and all(child.key() != r.key() for r, _, _ in out):
                out.append((child, ids, what))
        return out

    def run_round(self, session: Session) -> None:
        earlier = [r for r in session.records() if r.get("round", 0) < session.round]
        items = []
        for recipe, parents, what in self.propose(session.round, earlier):
            note = what if not parents else f"child of {', '.join(parents)}: {what}"
            items.append((render(recipe, note=f"Composed by the autotts local explorer ({note})."), note,
                          {"recipe": recipe.to_json(), "recipe_key": recipe.key(), "parents": parents,
                           "change": what, "mechanisms": recipe.mechanisms()}))
        results = session.evaluate_many(items)
        complete = [r for r in results if eligible(r)]
        if complete:
            session.submit(max(complete, key=lambda r: r["objective"])["id"], "best objective of the round")

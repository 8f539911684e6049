"""The local explorer: an evolutionary search over the momentum-vote family, no model, no key.

Round 0 evaluates the seed genomes (cmc itself and variants leaning towards the other built-ins);
every later round breeds `population` children from the best eligible candidates so far
(rank-weighted parents, mutation, some crossover) and evaluates them in parallel. Proposals of
round r depend only on `seed`, r and the records of rounds before r, so a resumed run proposes
exactly what the killed one did, and finished evaluations are found again by their code hash.
"""

from __future__ import annotations

import random
from typing import Any

from .base import Explorer, Session
from .family import Genome, crossover, mutate, render, seed_genomes

__all__ = ["LocalExplorer"]


class LocalExplorer(Explorer):
    name = "local"

    def __init__(self, *, seed: int = 0, population: int = 4, elite: int = 6, crossover_rate: float = 0.3,
                 mutation_rate: float = 0.3, mutation_scale: float = 0.12) -> None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        self.seed, self.population, self.elite = seed, population, elite
        self.crossover_rate, self.mutation_rate, self.mutation_scale = crossover_rate, mutation_rate, mutation_scale

    def describe(self) -> dict[str, Any]:
        return {"explorer": self.name, "seed": self.seed, "population": self.population, "elite": self.elite,
                "family": "momentum_vote"}

    def propose(self, round_no: int, earlier: list[dict[str, Any]]) -> list[tuple[Genome, list[str]]]:
        """(genome, parent ids) to evaluate in round `round_no`, given the records of earlier rounds."""
        rng = random.Random(f"autotts-local:{self.seed}:{round_no}")
        seen = {r["meta"]["genome_key"] for r in earlier if r.get("meta", {}).get("genome_key")}
        pool = sorted((r for r in earlier if r["status"] == "ok" and r.get("meta", {}).get("genome")),
                      key=lambda r: (-r["objective"], r["id"]))[: self.elite]
        out: list[tuple[Genome, list[str]]] = []
        if not pool:
            for g in seed_genomes():
                if g.key() not in seen:
                    out.append((g, []))
            base = seed_genomes()[0]
            while len(out) < max(self.population, 1) and len(out) < 50:
                child = mutate(base, rng, rate=self.mutation_rate, scale=self.mutation_scale)
                if child.key() not in seen | {g.key() for g, _ in out}:
                    out.append((child, []))
            return out
        parents = [(Genome.from_json(r["meta"]["genome"]), r["id"]) for r in pool]
        weights = [1.0 / (i + 1) for i in range(len(parents))]
        for _ in range(self.population * 50):
            if len(out) >= self.population:
                break
            (a, aid), = rng.choices(parents, weights)
            if len(parents) > 1 and rng.random() < self.crossover_rate:
                (b, bid), = rng.choices(parents, weights)
                child, ids = crossover(a, b, rng), sorted({aid, bid})
                if child.key() in (a.key(), b.key()):
                    child = mutate(child, rng, rate=self.mutation_rate, scale=self.mutation_scale)
            else:
                child, ids = mutate(a, rng, rate=self.mutation_rate, scale=self.mutation_scale), [aid]
            if child.key() not in seen and all(child.key() != g.key() for g, _ in out):
                out.append((child, ids))
        return out

    def run_round(self, session: Session) -> None:
        earlier = [r for r in session.records() if r.get("round", 0) < session.round]
        proposals = self.propose(session.round, earlier)
        items = []
        for genome, parents in proposals:
            note = "seed genome" if not parents else f"child of {', '.join(parents)}"
            items.append((render(genome, note=f"Discovered by the autotts local explorer ({note})."), note,
                          {"genome": genome.to_json(), "genome_key": genome.key(), "parents": parents}))
        results = session.evaluate_many(items)
        eligible = [r for r in results if r["status"] == "ok"]
        if eligible:
            best = max(eligible, key=lambda r: r["objective"])
            session.submit(best["id"], "best objective of the round")

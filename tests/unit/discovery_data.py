"""Small inputs shared by the discovery tests: a tiny public-format store and controller sources."""

from __future__ import annotations

import json
import random
from pathlib import Path


def tiny_store_file(root: Path, model: str = "Tiny", dataset: str = "bench", *, questions: int = 4,
                    branches: int = 64, seed: int = 0) -> Path:
    """A public-format JSON store whose probes drift towards each branch's final answer."""
    rng = random.Random(seed)
    data = []
    for q in range(questions):
        each = []
        for _ in range(branches):
            final = str(rng.choice([q, q, q, q + 1, q + 2]))
            n = rng.randint(2, 10)
            probes = [final if k >= n // 2 else rng.choice(["ERR", final, str(rng.randint(0, 9))]) for k in range(n)]
            probes[-1] = final
            each.append([probes, 500 * n - rng.randint(0, 499), final])
        data.append({"question": f"tiny question {q}", "gold_answer": str(q), "probe_freq": 500, "each_branch": each})
    path = root / model / f"{dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


HEADER = "from autotts.controllers import Branch, Continue, GeneratorController, Probe, Prune, top_two\n\n\n"


def beta_controller(body: str, *, name: str = "probe_test", knobs: str = '{"n": round(2 + 6 * beta)}',
                    budget: str = '("n",)', header: str = HEADER) -> str:
    """Source of a β-controller whose `run` body is `body` (indented 8 spaces)."""
    return (header + f"class Candidate(GeneratorController):\n    name = {name!r}\n    beta_range = (0.0, 1.0)\n"
            f"    default_beta = 0.5\n    budget_knobs = {budget}\n\n    @classmethod\n    def schedule(cls, beta):\n"
            f"        return {knobs}\n\n    def run(self, obs):\n" + body)


VALID = beta_controller(
    "        yield [Branch(self.knobs['n'], segments=None, probe=False)]\n"
    "        return top_two(obs.completed_answers())[0]\n")

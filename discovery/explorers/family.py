"""The controller family the local explorer searches: a genome → readable controller source.

The family generalises the built-ins' ideas: decode branches in lockstep and probe every segment
(parallel_probe), stop on the Beta-posterior confidence of the completed-answer vote smoothed by an
EMA with a momentum guard (asc, cmc), abandon branches that keep disagreeing with the vote
(parallel_probe, cmc), widen while the confidence is flat (cmc), stop early on a unanimous run of
completed answers (esc). One genome with `CMC_GENOME`'s values is exactly `cmc`.

A genome gives every knob two endpoints, its value at β=0 and at β=1; the generated `schedule(β)`
interpolates linearly (integers with `round`, floats to 4 decimals), so it is monotone by
construction, and every budget knob's β=1 end is kept >= its β=0 end, so a larger β never shrinks
the token envelope. The generated code is ordinary `GeneratorController` source: the artifact is
code, as an LLM explorer would write it.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUDGET_KNOBS", "CMC_GENOME", "KNOBS", "Genome", "crossover", "mutate", "render", "seed_genomes"]


@dataclass(frozen=True)
class Knob:
    kind: type  # int or float
    low: float
    high: float
    budget: bool  # larger value spends more tokens: must not decrease with β
    help: str


KNOBS: dict[str, Knob] = {
    "n_init": Knob(int, 1, 32, True, "branches opened at the start"),
    "max_branches": Knob(int, 2, 64, True, "most branches opened in total"),
    "warm_up": Knob(int, 0, 20, True, "steps before stopping, abandoning or bursting"),
    "abandon_patience": Knob(int, 1, 30, True, "abandon a branch after this many disagreeing steps in a row"),
    "T_ema": Knob(int, 1, 12, True, "EMA values kept for the momentum (delta)"),
    "burst_aligned": Knob(int, 1, 4, True, "segments per step for branches agreeing with the vote"),
    "widen_burst": Knob(int, 1, 8, True, "branches opened per widening"),
    "min_complete": Knob(int, 1, 12, True, "completed answers needed before a confidence stop"),
    "unanimous_stop": Knob(int, 2, 99, True, "stop once this many completed answers all agree (99: off)"),
    "conf_thresh": Knob(float, 0.5, 0.995, True, "stop when the smoothed vote confidence reaches this"),
    "ema_alpha": Knob(float, 0.05, 1.0, False, "EMA weight of the newest confidence"),
    "delta_slack": Knob(float, 0.0, 0.1, False, "a confidence stop tolerates this much downward momentum"),
    "trend_thresh": Knob(float, -0.05, 0.1, False, "widen while the momentum is at most this"),
}
BUDGET_KNOBS = tuple(k for k, v in KNOBS.items() if v.budget)

# Structural choices that do not depend on β.
FLAGS: dict[str, tuple[Any, ...]] = {
    "keep_alive": (1, 2, 3, 4),  # abandoning never leaves fewer than this many branches alive
    "err_is_vote": (True, False),  # does a completed "ERR" count in the vote?
    "err_disagrees": (True, False),  # does a latest "ERR" count as disagreeing with the vote?
}


@dataclass(frozen=True)
class Genome:
    """Knob endpoints {knob: (value at β=0, value at β=1)} and structural flags."""

    ends: dict[str, tuple[float, float]]
    flags: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """A short content hash: equal genomes render equal code."""
        blob = json.dumps({"ends": self.ends, "flags": self.flags}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def to_json(self) -> dict[str, Any]:
        return {"ends": {k: list(v) for k, v in self.ends.items()}, "flags": dict(self.flags)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Genome:
        return repair(cls({k: (v[0], v[1]) for k, v in data["ends"].items()}, dict(data.get("flags", {}))))


CMC_GENOME = Genome(
    ends={"n_init": (2, 8), "max_branches": (4, 64), "warm_up": (2, 10), "abandon_patience": (3, 12),
          "T_ema": (2, 8), "burst_aligned": (1, 3), "widen_burst": (1, 4), "min_complete": (2, 5),
          "unanimous_stop": (99, 99), "conf_thresh": (0.85, 0.97), "ema_alpha": (0.7, 0.3),
          "delta_slack": (0.04, 0.01), "trend_thresh": (0.04, 0.01)},
    flags={"keep_alive": 2, "err_is_vote": True, "err_disagrees": True})


def _clip(name: str, value: float) -> float:
    knob = KNOBS[name]
    value = min(max(value, knob.low), knob.high)
    return round(value) if knob.kind is int else round(float(value), 4)


def repair(genome: Genome) -> Genome:
    """Clip to the knob ranges, keep budget knobs non-decreasing in β and max_branches >= n_init."""
    ends = {}
    for name in KNOBS:
        lo, hi = genome.ends.get(name, CMC_GENOME.ends[name])
        lo, hi = _clip(name, lo), _clip(name, hi)
        if KNOBS[name].budget and hi < lo:
            lo, hi = hi, lo
        ends[name] = (lo, hi)
    n_lo, n_hi = ends["n_init"]
    m_lo, m_hi = ends["max_branches"]
    ends["max_branches"] = (max(m_lo, n_lo), max(m_hi, n_hi, m_lo, n_lo))
    flags = {k: genome.flags.get(k, CMC_GENOME.flags[k]) for k in FLAGS}
    for k, choices in FLAGS.items():
        if flags[k] not in choices:
            flags[k] = CMC_GENOME.flags[k]
    return Genome(ends, flags)


def seed_genomes() -> list[Genome]:
    """Round-0 population: cmc itself and variants leaning towards the other built-ins' ideas."""
    def variant(**changes: Any) -> Genome:
        ends = dict(CMC_GENOME.ends)
        flags = dict(CMC_GENOME.flags)
        for k, v in changes.items():
            (ends if k in KNOBS else flags)[k] = v
        return repair(Genome(ends, flags))

    return [
        CMC_GENOME,
        # parallel_probe-like: wide lockstep start, patient pruning, little widening
        variant(n_init=(8, 24), max_branches=(12, 48), abandon_patience=(4, 10), widen_burst=(1, 2)),
        # esc-like: a unanimous run of completed answers stops early
        variant(unanimous_stop=(3, 7), err_is_vote=False),
        # asc-like frugal start: few branches, confident stop, widen fast when unsure
        variant(n_init=(1, 4), widen_burst=(2, 6), conf_thresh=(0.8, 0.95), err_disagrees=False),
    ]


def _perturb(rng: random.Random, name: str, value: float, scale: float) -> float:
    knob = KNOBS[name]
    span = knob.high - knob.low
    if knob.kind is int:
        step = max(1.0, abs(rng.gauss(0.0, scale * span)))
        return value + rng.choice((-1, 1)) * round(step)
    return value + rng.gauss(0.0, scale * span)


def mutate(genome: Genome, rng: random.Random, *, rate: float = 0.3, scale: float = 0.12) -> Genome:
    """Perturb some knob endpoints (and rarely a flag); always returns a repaired, changed genome."""
    for _ in range(20):
        ends = dict(genome.ends)
        flags = dict(genome.flags)
        for name in KNOBS:
            if rng.random() < rate:
                lo, hi = ends[name]
                which = rng.random()
                if which < 0.4:
                    lo = _perturb(rng, name, lo, scale)
                elif which < 0.8:
                    hi = _perturb(rng, name, hi, scale)
                else:  # shift the whole schedule
                    d = _perturb(rng, name, 0.0, scale)
                    lo, hi = lo + d, hi + d
                ends[name] = (lo, hi)
        for name, choices in FLAGS.items():
            if rng.random() < rate / 4:
                flags[name] = rng.choice(choices)
        child = repair(Genome(ends, flags))
        if child.key() != genome.key():
            return child
    return child


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Each knob's schedule and each flag taken whole from one parent."""
    ends = {k: (a if rng.random() < 0.5 else b).ends[k] for k in KNOBS}
    flags = {k: (a if rng.random() < 0.5 else b).flags[k] for k in FLAGS}
    return repair(Genome(ends, flags))


def _schedule_lines(genome: Genome) -> list[str]:
    lines = []
    for name, knob in KNOBS.items():
        lo, hi = genome.ends[name]
        if knob.kind is int:
            expr = f"round({lo} + {hi - lo} * beta)" if hi != lo else f"{lo}"
        else:
            expr = f"round({lo} + {round(hi - lo, 4)} * beta, 4)" if hi != lo else f"{lo}"
        lines.append(f'            "{name}": {expr},  # {knob.help}')
    return lines


def render(genome: Genome, *, name: str | None = None, note: str = "") -> str:
    """Controller source for `genome` (a module with one GeneratorController subclass)."""
    key = genome.key()
    name = name or f"momentum_vote_{key}"
    flags = genome.flags
    doc = note or "Discovered by the autotts local explorer (momentum-vote family)."
    budget = ", ".join(f'"{k}"' for k in BUDGET_KNOBS)
    return _TEMPLATE.format(
        doc=doc, key=key, name=name, budget=budget, schedule="\n".join(_schedule_lines(genome)),
        keep_alive=flags["keep_alive"], err_is_vote=flags["err_is_vote"], err_disagrees=flags["err_disagrees"])


_TEMPLATE = '''"""{doc}

Momentum vote (genome {key}): decode branches in lockstep, probing every segment; the vote over
completed answers gives a Beta-posterior confidence, smoothed by an EMA whose change over the last
T_ema values is the momentum. Stop when the smoothed confidence is high and not falling (or when
enough completed answers are unanimous); abandon branches that keep disagreeing with the vote;
widen while the confidence is flat and low. Every knob is a linear function of beta.
"""

from collections import deque

from autotts.controllers import Branch, Continue, GeneratorController, Param, Prune, beta_confidence, top_two


class MomentumVote(GeneratorController):
    name = "{name}"
    version = "1"
    description = "momentum vote over completed answers with lockstep probing, abandoning and widening"
    parameters = {{"max_steps": Param(int, 500, low=1, help="hard cap on rounds")}}
    beta_range = (0.0, 1.0)
    default_beta = 0.5
    budget_knobs = ({budget})
    KEEP_ALIVE = {keep_alive}  # abandoning never leaves fewer branches alive than this
    ERR_IS_VOTE = {err_is_vote}  # a completed "ERR" counts in the vote
    ERR_DISAGREES = {err_disagrees}  # a latest "ERR" counts as disagreeing with the vote

    @classmethod
    def schedule(cls, beta):
        return {{
{schedule}
        }}

    def vote(self, obs):
        pool = [a for a in obs.completed_answers() if self.ERR_IS_VOTE or a != "ERR"]
        winner, v1, v2 = top_two(pool)
        return winner, (beta_confidence(v1, v2) if pool else 0.0), v1, v1 == len(pool)

    def run(self, obs):
        k = self.knobs
        alpha, warm_up = k["ema_alpha"], k["warm_up"]
        first = k["n_init"] if obs.branches_available is None else min(k["n_init"], obs.branches_available)
        if first:
            yield [Branch(first)]
        ema, kept = 0.0, deque(maxlen=k["T_ema"])
        disagree = {{}}
        for step in range(self.params["max_steps"]):
            winner, conf, _, _ = self.vote(obs)
            ema = (1 - alpha) * ema + alpha * conf
            kept.append(ema)
            alive = obs.running()
            abandon = []
            if step >= warm_up and winner is not None:
                for b in alive:
                    off = b.latest != winner and (self.ERR_DISAGREES or b.latest != "ERR")
                    disagree[b.id] = disagree.get(b.id, 0) + 1 if off else 0
                deviant = sorted((b for b in alive if disagree[b.id] >= k["abandon_patience"]),
                                 key=lambda b: -disagree[b.id])
                abandon = [b.id for b in deviant[:max(0, len(alive) - self.KEEP_ALIVE)]]
                alive = [b for b in alive if b.id not in abandon]
            alive.sort(key=lambda b: -len(b.answers))
            batch = [Prune(i) for i in abandon] + [
                Continue(b.id, segments=k["burst_aligned"] if step >= warm_up and b.latest == winner else 1)
                for b in alive]
            if batch:
                yield batch
            winner, conf, votes, unanimous = self.vote(obs)
            ema = (1 - alpha) * ema + alpha * conf
            kept[-1] = ema
            delta = kept[-1] - kept[0] if len(kept) >= 2 else 0.0
            if winner is not None and unanimous and votes >= k["unanimous_stop"]:
                return winner
            if (step >= warm_up and len(obs.completed) >= k["min_complete"]
                    and ema >= k["conf_thresh"] and delta >= -k["delta_slack"]):
                return winner
            if not obs.running():
                break
            if delta <= k["trend_thresh"] and step >= max(1, warm_up // 2) and ema < k["conf_thresh"]:
                room = k["max_branches"] - len(obs.branches)
                if obs.branches_available is not None:
                    room = min(room, obs.branches_available)
                if min(k["widen_burst"], room) > 0:
                    yield [Branch(min(k["widen_burst"], room))]
        pool = [a for a in obs.completed_answers() if self.ERR_IS_VOTE or a != "ERR"] or obs.completed_answers()
        return top_two(pool)[0] if pool else top_two([b.latest for b in obs.branches if not b.pruned])[0]
'''

"""Changing recipes: structural mutations (a block swapped, added or dropped), knob moves, crossover,
and moves steered by trace evidence (`discovery.evidence.diagnose`).

Every operator returns a repaired recipe and a one-line description of what it changed, which the
history keeps and the report shows next to the code diff. The evidence steers like this, on the side
of the β sweep where it was seen (the β=0 end of a knob for the low half, the β=1 end for the high):

* stopped too early → a stop knob moves towards spending more (a stricter stop);
* pruned branches that would have won → a pruning knob moves towards spending more, or a prune
  block is dropped;
* never reached the gold → more width: the opening, the cap or the widening grow, or the widening
  block changes;
* waited long after the vote had settled → a stop knob moves towards spending less, or another stop
  block (or a pacing block) is added.
"""

from __future__ import annotations

import random
from typing import Any

from .knobs import CORE_KNOBS, KNOBS, SLOTS
from .recipe import BLOCKS, Recipe, by_slot, repair

__all__ = ["crossover", "guided", "mutate", "perturb", "restructure"]


def _step(rng: random.Random, name: str, scale: float) -> float:
    knob = KNOBS[name]
    if knob.kind is int:
        return float(max(1, round(abs(rng.gauss(0.0, scale * (knob.high - knob.low))))))
    return abs(rng.gauss(0.0, scale * (knob.high - knob.low))) or 0.01


def _moved(recipe: Recipe, name: str, end: int, amount: float) -> tuple[Recipe, str]:
    ends = dict(recipe.ends)
    pair = list(ends[name])
    before = pair[end]
    pair[end] = before + amount
    ends[name] = (pair[0], pair[1])
    child = repair(Recipe(recipe.blocks, ends))
    return child, f"{name} at beta={end}: {before:g} -> {child.ends[name][end]:g}"


def perturb(recipe: Recipe, rng: random.Random, *, rate: float = 0.3, scale: float = 0.12) -> tuple[Recipe, str]:
    """Move some knobs' endpoints (one end, the other, or the whole schedule)."""
    ends, changed = dict(recipe.ends), []
    for name in recipe.knobs():
        if rng.random() >= rate:
            continue
        lo, hi = ends[name]
        d = _step(rng, name, scale) * rng.choice((-1, 1))
        which = rng.random()
        lo, hi = (lo + d, hi) if which < 0.4 else (lo, hi + d) if which < 0.8 else (lo + d, hi + d)
        ends[name] = (lo, hi)
        changed.append(name)
    child = repair(Recipe(recipe.blocks, ends))
    shown = [f"{n} {recipe.ends[n][0]:g}..{recipe.ends[n][1]:g} -> {child.ends[n][0]:g}..{child.ends[n][1]:g}"
             for n in changed if child.ends[n] != recipe.ends[n]]
    return child, "knobs: " + ("; ".join(shown) if shown else "none")


def restructure(recipe: Recipe, rng: random.Random, slot: str | None = None, how: str | None = None
                ) -> tuple[Recipe, str]:
    """Swap, add or drop one block (in `slot`, by `how` when given: unchanged if that move is not possible)."""
    slot = slot or rng.choice(list(SLOTS))
    rule, have = SLOTS[slot], list(recipe.blocks.get(slot, ()))
    others = [n for n in by_slot(slot) if n not in have]
    moves = [m for m, ok in (("swap", bool(have) and bool(others)), ("add", len(have) < rule.most and bool(others)),
                             ("drop", len(have) > rule.least)) if ok]
    if how is not None:
        moves = [how] if how in moves else []
    if not moves:
        return recipe, "no structural change"
    move = rng.choice(moves)
    if move == "swap":
        i = rng.randrange(len(have))
        old, have[i] = have[i], rng.choice(others)
        what = f"{slot}: {BLOCKS[old].title} -> {BLOCKS[have[i]].title}"
    elif move == "add":
        have.append(rng.choice(others))
        what = f"{slot}: + {BLOCKS[have[-1]].title}"
    else:
        old = have.pop(rng.randrange(len(have)))
        what = f"{slot}: - {BLOCKS[old].title}"
    return repair(Recipe({**recipe.blocks, slot: tuple(have)}, recipe.ends)), what


def _slot_knobs(recipe: Recipe, slots: tuple[str, ...]) -> list[str]:
    names = [k for b in recipe.block_list() if b.slot in slots for k in b.knobs if KNOBS[k].spend]
    return list(dict.fromkeys(names))


def guided(recipe: Recipe, rng: random.Random, diagnosis: dict[str, dict[str, float]],
           scale: float = 0.12) -> tuple[Recipe, str] | None:
    """One move against the commonest failure the evidence shows (see the module docstring); None
    when the evidence shows nothing to act on."""
    options = []
    for half, shares in diagnosis.items():
        options += [(half, kind, shares.get(kind, 0.0)) for kind in ("early_stop", "pruned_winner", "not_reached")]
        options.append((half, "settled_waits", min(1.0, shares.get("settled_waits", 0.0) / 10)))
    options = [o for o in options if o[2] > 0]
    if not options:
        return None
    half, kind, share = rng.choices(options, [o[2] for o in options])[0]
    end = 0 if half == "low" else 1
    why = (f"evidence ({half} beta: {diagnosis[half]['settled_waits']:.1f} settled waits)" if kind == "settled_waits"
           else f"evidence ({half} beta: {kind} {share:.0%})")
    if kind == "pruned_winner" and recipe.blocks["prune"] and rng.random() < 0.3:
        child, what = restructure(recipe, rng, "prune", "drop")
        return child, f"{why}: {what}"
    if kind == "not_reached" and rng.random() < 0.3:
        child, what = restructure(recipe, rng, "widen", "swap")
        return child, f"{why}: {what}"
    if kind == "settled_waits" and rng.random() < 0.35:
        child, what = restructure(recipe, rng, rng.choice(("stop", "pace")), "add")
        return child, f"{why}: {what}"
    pick = {"early_stop": _slot_knobs(recipe, ("stop",)), "pruned_winner": _slot_knobs(recipe, ("prune",)),
            "not_reached": [*CORE_KNOBS[:2], *_slot_knobs(recipe, ("widen", "pace"))],
            "settled_waits": _slot_knobs(recipe, ("stop",))}[kind]
    if not pick:
        return None
    name = rng.choice(pick)
    more = kind != "settled_waits"  # spend more, except where it waited for nothing
    amount = _step(rng, name, scale) * KNOBS[name].spend * (1 if more else -1)
    child, what = _moved(recipe, name, end, amount)
    return child, f"{why}: {what}"


def mutate(recipe: Recipe, rng: random.Random, *, diagnosis: dict[str, dict[str, float]] | None = None,
           rate: float = 0.3, scale: float = 0.12) -> tuple[Recipe, str]:
    """A changed recipe: an evidence-guided move, a structural change or knob moves."""
    what = "unchanged"
    child = recipe
    for _ in range(30):
        r = rng.random()
        move = guided(recipe, rng, diagnosis, scale) if diagnosis and r < 0.35 else None
        if move is None:
            move = restructure(recipe, rng) if r < 0.65 else perturb(recipe, rng, rate=rate, scale=scale)
        child, what = move
        if child.key() != recipe.key():
            return child, what
    return child, what


def crossover(a: Recipe, b: Recipe, rng: random.Random) -> tuple[Recipe, str]:
    """Each slot's blocks taken whole from one parent, each knob from the parent whose block reads it."""
    blocks, source = {}, {}
    for slot in SLOTS:
        parent = a if rng.random() < 0.5 else b
        blocks[slot] = parent.blocks.get(slot, ())
        for name in blocks[slot]:
            for knob in BLOCKS[name].knobs:
                source.setdefault(knob, parent)
    ends: dict[str, Any] = {}
    for knob in set(a.ends) | set(b.ends):
        parent = source.get(knob) or (a if rng.random() < 0.5 else b)
        ends[knob] = parent.ends.get(knob) or (a.ends.get(knob) or b.ends[knob])
    child = repair(Recipe(blocks, ends))
    taken = [f"{slot} from {'A' if blocks[slot] == a.blocks.get(slot, ()) else 'B'}" for slot in SLOTS]
    return child, "crossover: " + ", ".join(taken)

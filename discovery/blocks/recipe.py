"""A recipe: which block fills each slot, and every knob's value at β=0 and at β=1.

`repair` keeps a recipe inside the rules (each slot's block count, knob ranges, budget knobs that
never decrease with β and thrifty knobs that never increase, at least as many branches allowed as are
opened), so every recipe the search can reach renders to a controller whose schedule is monotone by
construction. `CMC_RECIPE` renders to a controller that plays every episode exactly as `cmc` does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .knobs import CORE_KNOBS, KNOBS, SLOTS, Block
from .pruning import DEPTH_BLOCKS, PRUNE_BLOCKS
from .stopping import PACE_BLOCKS, STOP_BLOCKS, WIDEN_BLOCKS
from .voting import SMOOTH_BLOCKS, VOTE_BLOCKS

__all__ = ["BLOCKS", "CMC_RECIPE", "Recipe", "by_slot", "repair", "seed_recipes"]

BLOCKS: dict[str, Block] = {b.name: b for b in (*VOTE_BLOCKS, *SMOOTH_BLOCKS, *PRUNE_BLOCKS, *DEPTH_BLOCKS,
                                                *STOP_BLOCKS, *WIDEN_BLOCKS, *PACE_BLOCKS)}


def by_slot(slot: str) -> list[str]:
    """The names of the blocks that can fill `slot`."""
    return [name for name, b in BLOCKS.items() if b.slot == slot]


@dataclass(frozen=True)
class Recipe:
    """Blocks per slot ({slot: (block names)}) and knob endpoints ({knob: (at β=0, at β=1)})."""

    blocks: dict[str, tuple[str, ...]]
    ends: dict[str, tuple[float, float]] = field(default_factory=dict)

    def block_list(self) -> list[Block]:
        """The recipe's blocks in slot order."""
        return [BLOCKS[name] for slot in SLOTS for name in self.blocks.get(slot, ())]

    def knobs(self) -> list[str]:
        """The knobs its schedule sets: the core ones, then each block's, in block order."""
        names = list(CORE_KNOBS)
        for block in self.block_list():
            names += [k for k in block.knobs if k not in names]
        return names

    def mechanisms(self) -> list[str]:
        """The mechanisms it composes, by name (as the report and the comments name them)."""
        return [b.title for b in self.block_list()]

    def key(self) -> str:
        """A short content hash: equal recipes render equal code."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:10]

    def to_json(self) -> dict[str, Any]:
        return {"blocks": {s: list(v) for s, v in self.blocks.items()},
                "ends": {k: list(v) for k, v in self.ends.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        return repair(cls({s: tuple(v) for s, v in data["blocks"].items()},
                          {k: (v[0], v[1]) for k, v in data.get("ends", {}).items()}))


def _clip(name: str, value: float) -> float:
    knob = KNOBS[name]
    value = min(max(value, knob.low), knob.high)
    return round(value) if knob.kind is int else round(float(value), 4)


def repair(recipe: Recipe) -> Recipe:
    """The nearest recipe that keeps every rule (see the module docstring)."""
    blocks: dict[str, tuple[str, ...]] = {}
    for slot, rule in SLOTS.items():
        names = [n for n in dict.fromkeys(recipe.blocks.get(slot, ())) if n in BLOCKS and BLOCKS[n].slot == slot]
        if len(names) < rule.least:
            names += [n for n in CMC_BLOCKS.get(slot, ()) if n not in names][: rule.least - len(names)]
        blocks[slot] = tuple(names[: rule.most])
    draft = Recipe(blocks)
    ends: dict[str, tuple[float, float]] = {}
    for name in draft.knobs():
        knob = KNOBS[name]
        lo, hi = recipe.ends.get(name, knob.default)
        lo, hi = _clip(name, lo), _clip(name, hi)
        if (knob.spend > 0 and hi < lo) or (knob.spend < 0 and hi > lo):
            lo, hi = hi, lo
        ends[name] = (lo, hi)
    (n_lo, n_hi), (m_lo, m_hi) = ends["n_init"], ends["max_branches"]
    ends["max_branches"] = (max(m_lo, n_lo), max(m_hi, n_hi, m_lo, n_lo))
    return Recipe(blocks, ends)


CMC_BLOCKS = {"vote": ("completed_vote",), "smooth": ("ema_momentum",), "prune": ("patience_pruning",),
              "depth": ("alignment_burst",), "stop": ("trend_stop",), "widen": ("trend_widening",), "pace": ()}
CMC_RECIPE = repair(Recipe(CMC_BLOCKS, {
    "n_init": (2, 8), "max_branches": (4, 64), "warm_up": (2, 10), "ema_alpha": (0.7, 0.3), "T_ema": (2, 8),
    "abandon_patience": (3, 12), "keep_alive": (2, 2), "burst_aligned": (1, 3), "min_complete": (2, 5),
    "conf_thresh": (0.85, 0.97), "delta_slack": (0.04, 0.01), "widen_burst": (1, 4), "trend_thresh": (0.04, 0.01),
    "widen_below": (0.85, 0.97)}))


def _variant(changes: dict[str, tuple[str, ...]], **ends: tuple[float, float]) -> Recipe:
    return repair(Recipe({**CMC_RECIPE.blocks, **changes}, {**CMC_RECIPE.ends, **ends}))


def seed_recipes() -> list[Recipe]:
    """Round 0: cmc, recipes leaning towards the other built-ins, and cmc with each new block grafted on
    once, so that every mechanism of the library meets the search at least once."""
    stops = ("trend_stop",)
    return [
        CMC_RECIPE,
        # parallel_probe-like: a wide lockstep start, latest-answer vote, patient pruning, a stable winner stops
        _variant({"vote": ("latest_vote",), "depth": ("lockstep_depth",), "stop": ("stable_winner_stop",),
                  "widen": ("no_widening",)}, n_init=(8, 48), max_branches=(8, 48), warm_up=(4, 15),
                 abandon_patience=(4, 7)),
        # esc-like: a unanimous run of finished answers stops early
        _variant({"stop": ("unanimity_stop", *stops)}),
        # asc-like: raw confidence, no momentum
        _variant({"smooth": ("raw_confidence",)}),
        # cmc with one new mechanism each
        _variant({"vote": ("probe_vote",)}),
        _variant({"vote": ("err_blind_vote",)}),
        _variant({"vote": ("settled_vote",)}, probe_run=(6, 10)),
        _variant({"stop": (*stops, "stability_gate")}),
        _variant({"stop": (*stops, "margin_stop")}),
        _variant({"prune": ("patience_pruning", "overlong_pruning")}),
        _variant({"depth": ("leader_focus",)}),
        _variant({"widen": ("coupled_widening",)}),
        _variant({"widen": ("split_widening",)}),
        _variant({"pace": ("budget_pacing",)}),
        _variant({"pace": ("width_cap",)}),
        _variant({"pace": ("consensus_pacing",)}),
        _variant({"widen": ("informed_widening",)}),
        _variant({"vote": ("short_trace_vote",)}),
    ]

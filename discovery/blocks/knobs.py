"""The vocabulary of the block library: knobs, slots and blocks.

A *knob* is one number a controller's β schedule sets. It declares its range and which way it moves
spending (`spend`): +1 when a larger value spends more tokens (a budget knob: it never decreases as
β grows), -1 when a larger value spends fewer (it never increases as β grows), 0 when it is neither.
A recipe gives each knob its value at β=0 and at β=1 and the schedule interpolates linearly, so every
knob is monotone in β by construction and the token envelope only widens as β grows.

A *slot* is one decision a controller makes every step (how to vote, when to stop, ...); a *block* is
one way to make it: a short, readable method that becomes part of the controller's source, with the
knobs it reads. Knobs are shared by name, so blocks of one slot that read the same knob (the widening
blocks' `widen_burst`) keep its values when one replaces the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CORE_KNOBS", "KNOBS", "SLOTS", "Block", "Knob", "Slot"]


@dataclass(frozen=True)
class Knob:
    kind: type  # int or float
    low: float
    high: float
    spend: int  # +1 more tokens as it grows (budget knob), -1 fewer, 0 neither
    default: tuple[float, float]  # (value at β=0, value at β=1) when a block brings it in
    help: str


KNOBS: dict[str, Knob] = {
    # core: every controller opens, caps and warms up
    "n_init": Knob(int, 1, 32, +1, (2, 8), "branches opened at the start"),
    "max_branches": Knob(int, 1, 64, +1, (4, 64), "most branches opened in total"),
    "warm_up": Knob(int, 0, 20, +1, (2, 10), "steps before pruning, bursting or stopping"),
    # confidence
    "ema_alpha": Knob(float, 0.05, 1.0, 0, (0.7, 0.3), "EMA weight of the newest vote confidence"),
    "T_ema": Knob(int, 1, 12, +1, (2, 8), "EMA values kept for the trend"),
    "probe_run": Knob(int, 1, 12, +1, (3, 6), "probes in a row naming a finished answer that count as its vote"),
    # pruning and depth
    "abandon_patience": Knob(int, 1, 30, +1, (3, 12), "disagreeing steps in a row before a branch is abandoned"),
    "keep_alive": Knob(int, 1, 6, +1, (2, 2), "patience pruning never leaves fewer branches running"),
    "cap_ratio": Knob(float, 1.1, 6.0, +1, (1.5, 3), "abandon branches this many times deeper than the first done"),
    "cap_keep": Knob(int, 1, 6, +1, (1, 2), "overlong pruning never leaves fewer branches running"),
    "burst_aligned": Knob(int, 1, 4, +1, (1, 3), "segments per step for branches agreeing with the winner"),
    "focus_burst": Knob(int, 1, 6, +1, (2, 4), "segments per step for the branches the leader focus decodes"),
    # stopping
    "min_complete": Knob(int, 1, 12, +1, (2, 5), "votes needed before a trend stop"),
    "conf_thresh": Knob(float, 0.5, 0.995, +1, (0.85, 0.97), "smoothed confidence a trend stop needs"),
    "delta_slack": Knob(float, 0.0, 0.1, -1, (0.04, 0.01), "downward trend a trend stop tolerates"),
    "unanimous": Knob(int, 2, 12, +1, (3, 7), "finished answers that, all equal, stop the episode"),
    "gate_run": Knob(int, 1, 12, +1, (3, 6), "probes in a row every running branch must agree for"),
    "gate_votes": Knob(int, 1, 8, +1, (1, 3), "finished answers the winner needs before the gate opens"),
    "margin": Knob(int, 1, 10, +1, (2, 4), "finished-answer lead of the winner that stops the episode"),
    "stable_steps": Knob(int, 2, 60, +1, (8, 40), "steps the winner must stay the same"),
    # widening and pacing
    "widen_burst": Knob(int, 1, 8, +1, (1, 4), "branches opened per widening"),
    "widen_below": Knob(float, 0.5, 0.995, +1, (0.85, 0.97), "widen only while the confidence is below this"),
    "trend_thresh": Knob(float, -0.05, 0.1, 0, (0.04, 0.01), "widen while the trend is at most this"),
    "widen_wait": Knob(int, 0, 40, -1, (12, 6), "steps without any finished branch before widening"),
    "pace": Knob(float, 1.0, 20.0, +1, (3.0, 10.0), "spend at most this many times the first finished branch's cost"),
    "max_running": Knob(int, 1, 64, +1, (4, 32), "most branches decoding at once"),
    "race_width": Knob(int, 1, 64, +1, (4, 24), "branches racing before any has finished"),
    "consensus": Knob(float, 0.5, 1.0, +1, (0.8, 1.0), "probe-answer share that stops widening"),
    "consensus_votes": Knob(int, 1, 16, +1, (2, 4), "probe answers that must agree before widening stops"),
}

CORE_KNOBS = ("n_init", "max_branches", "warm_up")


@dataclass(frozen=True)
class Slot:
    least: int
    most: int
    method: str  # what the skeleton calls (multi-slot blocks add their own suffix)
    help: str


SLOTS: dict[str, Slot] = {
    "vote": Slot(1, 1, "vote", "how the answers seen so far become a winner, a confidence and a vote count"),
    "smooth": Slot(1, 1, "smooth", "how the confidence becomes a level and a trend"),
    "prune": Slot(0, 2, "prune", "which running branches to abandon"),
    "depth": Slot(1, 1, "segments", "how many segments each running branch decodes per step"),
    "stop": Slot(1, 3, "stop", "when to answer (any stop block may end the episode)"),
    "widen": Slot(1, 1, "widen", "when to open new branches"),
    "pace": Slot(0, 1, "pace", "a cap on widening"),
}


@dataclass(frozen=True)
class Block:
    """One mechanism: a method of the generated controller, the knobs it reads and its episode state."""

    name: str
    slot: str
    title: str  # the mechanism's name, as comments and reports show it
    origin: str  # the built-in it comes from, or "new"
    knobs: tuple[str, ...]
    code: str  # the method's source, indented 4 spaces; its docstring says why
    state: tuple[tuple[str, str], ...] = ()  # per-episode state: (key, initial value expression over `k`)
    imports: tuple[str, ...] = ()  # names it needs from autotts.controllers / collections

    @property
    def method(self) -> str:
        """The name of the method it contributes."""
        base = SLOTS[self.slot].method
        return f"{base}_{self.name.rsplit('_', 1)[0]}" if SLOTS[self.slot].most > 1 else base

"""The replay driver's commonest actions, applied without building units: part of the episode machine.

`EpisodeMachine` (episode.py) inherits these: a segment of a recorded branch with probes left, a branch read
to its end, and new branches opened already read to their end. Each does exactly what ``recorded_units`` fed
to `EpisodeMachine._apply_units` would; the drivers' agreement and mirror tests
(tests/unit/test_episode_machine.py) hold them to it, as the live replay engine always builds units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .observation import (
    BranchView,
    open_branch,
    open_finished_branch,
    set_depth,
    set_final,
    set_finished,
    set_latest,
    set_spent,
    set_tokens,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .aggregators import Equivalence
    from .obs_sync import Changes
    from .observation import Observation
    from .units import Recorded

__all__ = ["RecordedShortcuts"]

_append = list.append  # past ReadOnlyList's refusals


class _Budget(Exception):
    """The token budget was reached before a unit: the episode ends with the vote so far."""


class RecordedShortcuts:
    """The shortcuts' half of `EpisodeMachine` (its state is set by the machine's constructor)."""

    obs: Observation
    token_budget: int | None
    kappa_probe: int
    probes: int
    changes: Changes | None
    equivalence: Equivalence | None
    _tracks: list[Recorded]
    _recorded: Callable[[int], Recorded]

    def _probed_segment(self, view: BranchView, track: Recorded, probe: bool, revealed: list | None) -> None:
        """One segment of a recorded branch that has probes left: what ``recorded_units(track, depth, 1, probe)``
        yields, applied as `_apply_units` would, without building the unit (the replay driver's commonest
        action; the drivers' agreement test covers it, as the live replay engine always builds units)."""
        obs, budget = self.obs, self.token_budget
        spent = obs.tokens_spent
        if budget is not None and spent >= budget:
            raise _Budget
        depth = view.depth + 1
        cost = obs.segment_tokens + self.kappa_probe if probe else obs.segment_tokens
        set_spent(obs, spent + cost)
        set_tokens(view, view.tokens + cost)
        set_depth(view, depth)
        if probe:
            answer = track[0][depth - 1]
            if self.equivalence is not None:
                answer = self.equivalence(answer)
            _append(view.answers, answer)
            _append(view.depths, depth)
            _append(view.confidences, None)
            set_latest(view, answer)
            self.probes += 1
            if revealed is not None:
                revealed.append((view.id, answer))
        if self.changes is not None:
            self.changes.ints += (view.id, depth, view.tokens, 0, 1 if probe else 0)
            if probe:
                self.changes.answers.append(answer)
                self.changes.confidences.append(None)

    def _open_read(self, n: int, revealed: list | None) -> None:
        """`n` new recorded branches, each read to its end without probes (``Branch(n, None, False)``):
        `_full_read` of a branch just opened, each built finished in one go (`open_finished_branch`)."""
        obs, budget, changes, tracks, recorded = self.obs, self.token_budget, self.changes, self._tracks, self._recorded
        canon = self.equivalence
        for _ in range(n):
            track = recorded(len(obs.branches))
            tracks.append(track)
            spent = obs.tokens_spent
            if budget is not None and spent >= budget:
                self._full_read(open_branch(obs), track, revealed)  # opened all the same, then out of budget
            probes, tokens, final = track
            if canon is not None and final is not None:
                final = canon(final)
            depth, tokens = len(probes) + 1, max(0, tokens)
            set_spent(obs, spent + tokens)
            view = open_finished_branch(obs, depth, tokens, final)
            if revealed is not None:
                revealed.append((view.id, final))
            if changes is not None:
                changes.ints += (view.id, depth, tokens, 1, 1)
                changes.answers.append(final)
                changes.confidences.append(None)

    def _full_read(self, view: BranchView, track: Recorded, revealed: list | None) -> None:
        """A recorded branch read to its end without probes: what ``recorded_units(track, depth, None, False)``
        yields, applied as `_apply_units` would, without building the unit (sc, asc and esc read every branch
        this way; the drivers' agreement test covers it, as the live replay engine always builds units)."""
        obs, budget = self.obs, self.token_budget
        spent = obs.tokens_spent
        if budget is not None and spent >= budget:
            if self.changes is not None:  # a branch opened just now is part of the observation all the same
                self.changes.record(view, len(view.answers))
            raise _Budget
        probes, tokens, final = track
        if self.equivalence is not None and final is not None:
            final = self.equivalence(final)
        cost = max(0, tokens - obs.segment_tokens * view.depth)
        depth = len(probes) + 1
        set_spent(obs, spent + cost)
        set_tokens(view, view.tokens + cost)
        set_depth(view, depth)
        _append(view.answers, final)
        _append(view.depths, depth)
        _append(view.confidences, None)
        set_latest(view, final)
        set_finished(view, True)
        set_final(view, final)
        _append(obs.completed, view.id)
        if revealed is not None:
            revealed.append((view.id, final))
        if self.changes is not None:
            self.changes.ints += (view.id, depth, view.tokens, 1, 1)
            self.changes.answers.append(final)
            self.changes.confidences.append(None)

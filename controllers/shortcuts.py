"""The replay driver's commonest actions, applied without building units: part of the episode machine.

`EpisodeMachine` (episode.py) inherits these: a segment of a recorded branch with probes left, a branch read
to its end, and new branches opened already read to their end. Each does exactly what ``recorded_units`` fed
to `EpisodeMachine._apply_units` would; the drivers' agreement and mirror tests
(tests/unit/test_episode_machine.py) hold them to it, as the live replay engine always builds units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .actions import Continue, Prune
from .observation import (
    BranchView,
    open_branch,
    open_finished_branch,
    set_depth,
    set_final,
    set_finished,
    set_latest,
    set_pruned,
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
    _act: Callable[..., None]

    def _run_recorded(self, batch: list) -> None:
        """A replayed batch without budget, trace or equivalence classes: continues that stay within the
        recorded probes and prunes of running branches applied here, in a few lines each; every other
        action (and every illegal one, for its error) by `EpisodeMachine._act`, in batch order. The
        episode's counters are kept in locals and written back before each `_act` and at the end."""
        obs, tracks, changes = self.obs, self._tracks, self.changes
        branches, seg, kappa, last = obs.branches, obs.segment_tokens, self.kappa_probe, len(batch) - 1
        logged = changes is not None
        if logged:
            ints, shown, confidences = changes.ints, changes.answers, changes.confidences
        spent, probed, pruned = obs.tokens_spent, 0, 0
        try:
            for i, action in enumerate(batch):
                kind = type(action)
                if kind is Continue:
                    b, segments, probe = action[1], action[2], action[3]
                    if segments is not None and b < len(branches):
                        view = branches[b]
                        probes = tracks[b][0]
                        depth = view.depth
                        end = depth + segments
                        if end <= len(probes) and not (view.finished or view.pruned):
                            cost = (seg + kappa if probe else seg) * segments
                            spent += cost
                            tokens = view.tokens + cost
                            set_tokens(view, tokens)
                            set_depth(view, end)
                            if probe:
                                if segments == 1:
                                    answer = probes[depth]
                                    _append(view.answers, answer)
                                    _append(view.depths, end)
                                    _append(view.confidences, None)
                                    if logged:
                                        _append(shown, answer)
                                        _append(confidences, None)
                                else:
                                    for at in range(depth, end):
                                        answer = probes[at]
                                        _append(view.answers, answer)
                                        _append(view.depths, at + 1)
                                        _append(view.confidences, None)
                                        if logged:
                                            _append(shown, answer)
                                            _append(confidences, None)
                                set_latest(view, answer)
                                probed += segments
                            if logged:
                                ints += (b, end, tokens, 0, segments if probe else 0)
                            continue
                elif kind is Prune:
                    b = action[1]
                    if b < len(branches) and not branches[b].pruned:
                        view = branches[b]
                        set_pruned(view, True)
                        pruned += 1
                        if logged:
                            ints += (b, view.depth, view.tokens, view.finished | 2, 0)
                        continue
                set_spent(obs, spent)
                self.probes, self.prunes, probed, pruned = self.probes + probed, self.prunes + pruned, 0, 0
                spent = None  # the machine's own counter while `_act` runs (it may stop part-way)
                self._act(i, action, last, None)
                spent = obs.tokens_spent
        finally:
            if spent is not None:
                set_spent(obs, spent)
            self.probes, self.prunes = self.probes + probed, self.prunes + pruned

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

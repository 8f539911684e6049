"""The episode machine: every rule of an episode, and no I/O.

One `EpisodeMachine` per episode owns the observation and is the only code that knows the rules:
batch validation, the legality table below, every cost, the token budget, the step limit, the
fallback answer, the execution trace and every change to the observation. Drivers only move data:

* the replay driver (`autotts.offline.env.ReplayEnv`) gives the machine each opened branch's
  recorded trajectory, and `step(batch)` answers the batch's work from it with `recorded_units`;
* the live executor (`autotts.server.executor`) asks `plan(batch)` for the work, runs each
  branch's chain of engine calls concurrently, then `apply(plan)` applies what came back in
  action order, so the result equals sequential execution;
* the sandbox driver runs the machine in the trusted process and ships only the observation to
  the controller's worker.

Work comes back as *units*, one per decoded segment or probe; the replay cost rules that turn a
recorded trajectory into units are in `units` (`recorded_units`, `recorded_probe`). The budget is
checked before every unit, and an episode that reaches it ends with the vote so far. With
``log_changes`` the machine also logs every change it makes to the observation (`obs_sync`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .actions import ACTION_TYPES, ANSWER, BRANCH, CONTINUE, PROBE, PRUNE, Answer, Branch, action_dict
from .aggregate import majority
from .aggregators import Aggregator, Equivalence, Vote
from .errors import EpisodeError, IllegalActionError
from .obs_sync import Changes
from .observation import (
    BranchView,
    Observation,
    open_branch,
    set_depth,
    set_final,
    set_finished,
    set_latest,
    set_pruned,
    set_spent,
    set_step,
    set_tokens,
)
from .shortcuts import RecordedShortcuts, _Budget
from .units import STOP, Plan, Recorded, Unit, Work, recorded_probe, recorded_units

__all__ = ["LEGALITY", "MAX_STEPS", "STOP", "Changes", "EpisodeMachine", "Plan", "Recorded", "Unit", "Work",
           "fallback_answer", "recorded_probe", "recorded_units", "vote_pool"]

MAX_STEPS = 10_000  # default step limit of an episode

# The legality table: for every action, in every state it can meet, why it is illegal (None: legal).
# Branch actions meet a branch that is running, finished, pruned or was never opened; Branch meets
# enough or too few branches left to open; Answer is last in its batch or not; and nothing is legal
# once the episode is over.
LEGALITY: dict[str, dict[str, str | None]] = {
    "Continue": {"running": None, "finished": "Continue on finished branch {b}",
                 "pruned": "Continue on pruned branch {b}",
                 "unopened": "Continue({b}) names a branch that was never opened ({opened} open)"},
    "Probe": {"running": None, "finished": "Probe on finished branch {b}", "pruned": "Probe on pruned branch {b}",
              "unopened": "Probe({b}) names a branch that was never opened ({opened} open)"},
    "Prune": {"running": None, "finished": None, "pruned": "Prune on pruned branch {b}",
              "unopened": "Prune({b}) names a branch that was never opened ({opened} open)"},
    "Branch": {"room": None, "no room": "Branch({n}) but only {left} branch(es) left to open"},
    "Answer": {"last": None, "not last": "Answer must be the last action of its batch"},
    "*": {"over": "the episode is over: no action is legal after its answer"},
}
_KINDS = frozenset(ACTION_TYPES)
_append = list.append  # the machine's way past ReadOnlyList's refusals
_NOT_AN_ACTION = "{action!r:.80} is not an action (Branch, Continue, Probe, Prune or Answer)"


def vote_pool(obs: Observation) -> list[str]:
    """What the episode votes over: completed answers, else unpruned branches' latest answers."""
    return obs.completed_answers() or [b.latest for b in obs.branches if not b.pruned and b.latest is not None]


def fallback_answer(obs: Observation) -> str | None:
    """The vote so far: majority of completed answers, else of unpruned branches' latest answers."""
    return majority(vote_pool(obs))


class EpisodeMachine(RecordedShortcuts):
    """The rules of one episode over one observation (see the module docstring).

    `recorded(branch_id)` (replay) returns the recorded trajectory of each branch as it is opened;
    without it the machine is live and every unit comes from `apply(plan)`.
    """

    def __init__(self, question_id: str | int, question: str, *, segment_tokens: int,
                 branches_available: int | None = None, beta: float | None = None,
                 token_budget: int | None = None, budget_visible: bool = True, kappa_probe: int = 0,
                 max_steps: int = MAX_STEPS, record_trace: bool = False,
                 recorded: Callable[[int], Recorded] | None = None, log_changes: bool = False,
                 aggregator: Aggregator | None = None) -> None:
        if kappa_probe < 0:
            raise ValueError(f"kappa_probe must be >= 0, got {kappa_probe}")
        if token_budget is not None and token_budget <= 0:
            raise ValueError(f"token_budget must be > 0, got {token_budget}")
        self.obs = Observation(question_id, question, beta=beta, segment_tokens=segment_tokens,
                               token_budget=token_budget if budget_visible else None,
                               branches_available=branches_available)
        self.kappa_probe, self.token_budget, self.max_steps = kappa_probe, token_budget, max_steps
        self.done = False  # the episode has its answer (or ran out of budget)
        self.failed: str | None = None  # why the episode ended without one (illegal action, step limit)
        self.answer: str | None = None
        self.budget_exhausted = False
        self.probes = self.prunes = 0
        self.trace: list[dict[str, Any]] | None = [] if record_trace else None
        #: every change to the observation since it was last taken (`obs_sync`), when asked for
        self.changes: Changes | None = Changes() if log_changes else None
        self._recorded = recorded
        self._tracks: list[Recorded] = []
        #: how the episode votes; key aggregators map every revealed answer to its class's first answer
        self.aggregator = aggregator or Aggregator()
        self.equivalence: Equivalence | None = self.aggregator.equivalence()
        self.vote: Vote | None = None  # set by `settle`

    def settle(self, **inputs) -> Vote:
        """The episode's final vote over `vote_pool` by its aggregator, once the controller answered.

        Key aggregators only report it (the controller voted over classes already); model-backed ones
        (semantic, judge) decide the answer here, from what the driver computed for `pool()`: the
        embeddings (``vectors=``) or the judge's reply (``judge_reply=``).
        """
        vote = self.aggregator.vote(self.pool(), equivalence=self.equivalence, **inputs)
        if self.aggregator.needs is not None and vote.winner is not None and not self.failed:
            self.answer = vote.winner
        self.vote = vote
        return vote

    def pool(self) -> list[str]:
        """The answers the final vote counts (`vote_pool`)."""
        return vote_pool(self.obs)

    # --- the two ways to run a batch -------------------------------------------------------
    def step(self, actions: Any) -> int:
        """Apply one batch with work answered from recorded trajectories; returns its cost."""
        if self._recorded is None:
            raise RuntimeError("a live machine applies batches with plan() and apply()")
        return self._step(self._batch(actions), None)

    def plan(self, actions: Any) -> Plan:
        """The engine work one batch needs, per branch, in action order (nothing applied yet)."""
        batch = self._batch(actions)
        obs = self.obs
        opened, left = len(obs.branches), obs.branches_available
        chains: dict[int, list[Work]] = {}
        state: dict[int, str] = {}  # tentative branch states after this batch's prunes
        for i, action in enumerate(batch):
            kind = type(action)
            if kind is Branch:
                if left is not None and action[1] > left:
                    break  # apply() raises here, in order
                for k in range(action[1]):
                    chains[opened] = [Work((i, k), opened, True, False, action[2], action[3])]
                    opened += 1
                left = None if left is None else left - action[1]
            elif kind not in ACTION_TYPES or kind is Answer:
                break
            else:
                b = action[1]
                if b >= opened:
                    break
                st = state.get(b) or (_state(obs.branches[b]) if b < len(obs.branches) else "running")
                if LEGALITY[kind.__name__][st] is not None:
                    break
                if action[0] == PRUNE:
                    state[b] = "pruned"
                else:
                    chains.setdefault(b, []).append(Work((i, 0), b, False, action[0] == PROBE, action[2], action[3]))
        return Plan(batch, chains)

    def apply(self, plan: Plan) -> int:
        """Apply a planned batch with the units its jobs produced, in action order; returns its cost."""
        return self._step(plan.batch, plan._units)

    # --- rules -----------------------------------------------------------------------------
    def _batch(self, actions: Any) -> list[Any]:
        step = self.obs.step
        if self.done or self.failed:
            raise IllegalActionError(f"step {step}: {LEGALITY['*']['over']}")
        if type(actions) in ACTION_TYPES:
            return [actions]
        if not isinstance(actions, list | tuple):
            raise self._fail(f"step {step}: controller returned {type(actions).__name__}, "
                             "expected a list of actions")
        if not actions:
            raise self._fail(f"step {step}: controller returned an empty batch (no progress possible)")
        return list(actions)

    def _fail(self, message: str, error: type[Exception] = IllegalActionError) -> Exception:
        self.failed = message
        return error(message)

    def _step(self, batch: list[Any], units_for: Callable[..., Iterable[tuple]] | None) -> int:
        obs = self.obs
        before = obs.tokens_spent
        try:
            self._run(batch, units_for)
        except _Budget:
            self.budget_exhausted = True
            self.done, self.answer = True, fallback_answer(obs)
        set_step(obs, obs.step + 1)
        if not self.done and obs.step >= self.max_steps:
            raise self._fail(f"no answer after {self.max_steps} steps", EpisodeError)
        return obs.tokens_spent - before

    def _run(self, batch: list[Any], units_for: Callable[..., Iterable[tuple]] | None) -> None:
        """Apply `batch` in order; units come from `units_for(index, k, action, view)` (live) or, when
        it is None, from the recorded trajectories (replay)."""
        if units_for is None and self.trace is None and self.token_budget is None and self.equivalence is None:
            self._run_recorded(batch)  # the replay driver's commonest case (shortcuts.py)
            return
        last = len(batch) - 1
        for i, action in enumerate(batch):
            self._act(i, action, last, units_for)

    def _act(self, i: int, action: Any, last: int, units_for: Callable[..., Iterable[tuple]] | None) -> None:
        """Apply action `i` of a batch whose last index is `last` (every rule of the legality table)."""
        obs = self.obs
        branches, step, trace = obs.branches, obs.step, self.trace
        recorded, tracks, seg, kappa = self._recorded, self._tracks, obs.segment_tokens, self.kappa_probe
        kind = type(action)
        if kind not in _KINDS:
            raise self._fail(f"step {step}: " + _NOT_AN_ACTION.format(action=action))
        spent = obs.tokens_spent
        revealed: list[tuple[int, str]] | None = None if trace is None else []
        code = action[0]
        if code == BRANCH:
            n, left = action[1], obs.branches_available
            if left is not None and n > left:
                raise self._fail(f"step {step}: " + LEGALITY["Branch"]["no room"].format(n=n, left=left))
            if units_for is None and action[2] is None and not action[3]:
                self._open_read(n, revealed)
            else:
                for k in range(n):
                    view = open_branch(obs)
                    if units_for is not None:
                        self._apply_units(view, units_for(i, k, action, view), revealed)
                        continue
                    track = recorded(view.id)
                    tracks.append(track)
                    self._apply_units(view, recorded_units(track, 0, action[2], action[3], seg, kappa),
                                      revealed)
        elif code == ANSWER:
            if i != last:
                raise self._fail(f"step {step}: " + LEGALITY["Answer"]["not last"])
            self.done, self.answer = True, action[1]
        else:
            b = action[1]
            if b >= len(branches):
                raise self._fail(f"step {step}: " + LEGALITY[kind.__name__]["unopened"].format(
                    b=b, opened=len(branches)))
            view = branches[b]
            if view.finished or view.pruned:  # every branch action is legal on a running branch
                reason = LEGALITY[kind.__name__][_state(view)]
                if reason is not None:
                    raise self._fail(f"step {step}: " + reason.format(b=b))
            if code == PRUNE:
                set_pruned(view, True)
                self.prunes += 1
                units = ()
                if self.changes is not None:
                    self.changes.ints += (b, view.depth, view.tokens, view.finished | 2, 0)
            elif units_for is not None:
                units = units_for(i, 0, action, view)
            elif action[2] == 1 and code == CONTINUE and view.depth < len(tracks[b][0]):
                self._probed_segment(view, tracks[b], action[3], revealed)
                units = ()
            elif action[2] is None and code == CONTINUE and not action[3]:
                self._full_read(view, tracks[b], revealed)
                units = ()
            elif code == PROBE:
                units = (recorded_probe(tracks[b], view.depth, kappa),)
            else:
                units = recorded_units(tracks[b], view.depth, action[2], action[3], seg, kappa)
            if units:
                self._apply_units(view, units, revealed)
        if trace is not None:
            trace.append({"step": step, "action": action_dict(action), "revealed": revealed,
                          "cost": obs.tokens_spent - spent, "tokens": obs.tokens_spent})

    def _apply_units(self, view: BranchView, units: Iterable[tuple], revealed: list | None) -> None:
        """Charge, deepen and reveal unit by unit; the budget is checked before each unit.

        The branch's and the episode's counters are kept in locals and written once at the end
        (also when the budget ends the episode part-way), which keeps the hot path short.
        """
        obs, budget = self.obs, self.token_budget
        spent = start = obs.tokens_spent
        depth, latest, probes = view.depth, None, 0
        answers, depths, confidences = view.answers, view.depths, view.confidences
        shown = len(answers)
        canon = self.equivalence
        try:
            for cost, at, answer, final, confidence in units:
                if cost is None or (budget is not None and spent >= budget):
                    raise _Budget  # STOP, or the budget is reached before this unit
                spent += cost
                if at is not None:
                    depth = at
                if answer is None:
                    continue
                if canon is not None:
                    answer = canon(answer)
                _append(answers, answer)
                _append(depths, depth)
                _append(confidences, confidence)
                latest = answer
                if revealed is not None:
                    revealed.append((view.id, answer))
                if final:
                    set_finished(view, True)
                    set_final(view, answer)
                    _append(obs.completed, view.id)
                    break
                probes += 1
        finally:
            set_spent(obs, spent)
            set_tokens(view, view.tokens + spent - start)
            set_depth(view, depth)
            if latest is not None:
                set_latest(view, latest)
            self.probes += probes
            if self.changes is not None:
                self.changes.record(view, shown)


def _state(view: BranchView) -> str:
    return "pruned" if view.pruned else "finished" if view.finished else "running"

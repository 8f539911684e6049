"""Blocks that decide about the episode: when to answer, when to open new branches, how far to widen.

A stop method `stop_*(obs, st, step, winner, votes, level, trend)` says whether to answer now (it is
asked only when there is a winner; any stop block may end the episode). `widen(obs, st, step, level,
trend)` returns how many branches to open (the skeleton caps it at `max_branches` and at what the
question has left); the optional `pace(obs, st, n)` caps that number further.
"""

from __future__ import annotations

from .knobs import Block

__all__ = ["PACE_BLOCKS", "STOP_BLOCKS", "WIDEN_BLOCKS"]

STOP_BLOCKS = (
    Block("trend_stop", "stop", "trend stopping", "cmc", ("warm_up", "min_complete", "conf_thresh", "delta_slack"),
          '''
    def stop_trend(self, obs, st, step, winner, votes, level, trend):
        """Trend stopping (cmc): after warm-up, answer once `min_complete` votes are in and the smoothed
        confidence has reached `conf_thresh` without falling by more than `delta_slack`."""
        k = self.knobs
        return (step >= k["warm_up"] and votes >= k["min_complete"] and level >= k["conf_thresh"]
                and trend >= -k["delta_slack"])
'''),
    Block("unanimity_stop", "stop", "unanimity stopping", "esc", ("unanimous",), '''
    def stop_unanimity(self, obs, st, step, winner, votes, level, trend):
        """Unanimity stopping (esc): answer once `unanimous` branches have finished, all with the same answer."""
        done = obs.completed_answers()
        return len(done) >= self.knobs["unanimous"] and len(set(done)) == 1
'''),
    Block("stability_gate", "stop", "answer-stability gate", "new", ("gate_run", "gate_votes"), '''
    def stop_stability(self, obs, st, step, winner, votes, level, trend):
        """Answer-stability gate: answer once `gate_votes` finished branches back the winner and every branch
        still running has named the winner in each of its last `gate_run` probes: waiting for them to
        finish would only repeat the vote."""
        k, run = self.knobs, self.knobs["gate_run"]
        if obs.completed_answers().count(winner) < k["gate_votes"]:
            return False
        return all(len(b.answers) >= run and all(a == winner for a in b.answers[-run:]) for b in obs.running())
'''),
    Block("margin_stop", "stop", "margin stopping", "new", ("warm_up", "margin"), '''
    def stop_margin(self, obs, st, step, winner, votes, level, trend):
        """Margin stopping: after warm-up, answer once the leading finished answer is `margin` votes ahead
        of the runner-up, however the confidence is smoothed."""
        _, v1, v2 = top_two(obs.completed_answers())
        return step >= self.knobs["warm_up"] and v1 - v2 >= self.knobs["margin"]
''', imports=("top_two",)),
    Block("stable_winner_stop", "stop", "stable-winner stopping", "parallel_probe", ("warm_up", "stable_steps"), '''
    def stop_stable_winner(self, obs, st, step, winner, votes, level, trend):
        """Stable-winner stopping (parallel_probe): answer once the winner has stayed the same for
        `stable_steps` steps after warm-up."""
        st["same"] = st["same"] + 1 if winner == st["last"] else 0
        st["last"] = winner
        return step >= self.knobs["warm_up"] and st["same"] >= self.knobs["stable_steps"]
''', state=(("same", "0"), ("last", "None"))),
)

_TREND = ("warm_up", "widen_burst", "trend_thresh", "widen_below")

WIDEN_BLOCKS = (
    Block("trend_widening", "widen", "trend widening", "cmc", _TREND, '''
    def widen(self, obs, st, step, level, trend):
        """Trend widening (cmc): from step max(1, warm_up // 2) on, open `widen_burst` branches whenever the
        smoothed confidence is below `widen_below` and not rising by more than `trend_thresh`."""
        k = self.knobs
        flat = trend <= k["trend_thresh"] and step >= max(1, k["warm_up"] // 2) and level < k["widen_below"]
        return k["widen_burst"] if flat else 0
'''),
    Block("coupled_widening", "widen", "coupled widening", "new", _TREND, '''
    def widen(self, obs, st, step, level, trend):
        """Coupled widening: every branch abandoned this step is replaced by a fresh one, so pruning never
        narrows the search, and `widen_burst` more open while the confidence is flat and below `widen_below`."""
        k = self.knobs
        flat = trend <= k["trend_thresh"] and step >= max(1, k["warm_up"] // 2) and level < k["widen_below"]
        return len(st["dropped"]) + (k["widen_burst"] if flat else 0)
'''),
    Block("split_widening", "widen", "split widening", "new", ("widen_burst", "widen_below", "widen_wait"), '''
    def widen(self, obs, st, step, level, trend):
        """Split widening: open `widen_burst` branches while the finished answers disagree, or when none has
        finished `widen_wait` steps in, as long as the confidence is below `widen_below`."""
        k, done = self.knobs, obs.completed_answers()
        split = len(set(done)) > 1 or (not done and step >= k["widen_wait"])
        return k["widen_burst"] if split and level < k["widen_below"] else 0
'''),
    Block("informed_widening", "widen", "informed widening", "new", (*_TREND, "race_width"), '''
    def widen(self, obs, st, step, level, trend):
        """Informed widening: cmc's trend rule, except before any branch has finished. Then the confidence
        is 0 because nothing has voted yet, not because the votes disagree, so new branches open only to
        keep `race_width` of them racing; once votes are in, `widen_burst` open whenever the confidence
        is flat and below `widen_below`."""
        k = self.knobs
        flat = trend <= k["trend_thresh"] and step >= max(1, k["warm_up"] // 2) and level < k["widen_below"]
        if not flat:
            return 0
        if not obs.completed:
            return max(0, min(k["widen_burst"], k["race_width"] - len(obs.running())))
        return k["widen_burst"]
'''),
    Block("no_widening", "widen", "fixed width", "parallel_probe", (), '''
    def widen(self, obs, st, step, level, trend):
        """Fixed width (parallel_probe): the branches opened at the start are all there is."""
        return 0
'''),
)

PACE_BLOCKS = (
    Block("budget_pacing", "pace", "budget pacing", "new", ("pace",), '''
    def pace(self, obs, st, n):
        """Budget pacing: new branches open only while the episode has spent less than `pace` times what its
        first finished branch cost, so a question whose answers keep disagreeing cannot take the whole
        envelope (before any branch finishes, widening is not capped)."""
        if not obs.completed:
            return n
        first = obs.branches[obs.completed[0]].tokens
        return n if obs.tokens_spent < self.knobs["pace"] * first else 0
'''),
    Block("consensus_pacing", "pace", "probe-consensus pacing", "new", ("consensus", "consensus_votes"), '''
    def pace(self, obs, st, n):
        """Probe-consensus pacing: no new branch opens while the running branches' latest probe answers
        ("ERR" aside) already agree: `consensus_votes` of them name one answer, a `consensus` share of all.
        Before any branch finishes the vote's confidence is 0 and would widen blindly; the probes say
        whether more width can still change the answer."""
        latest = [b.latest for b in obs.running() if b.latest not in (None, "ERR")]
        _, v1, _ = top_two(latest)
        agreed = v1 >= self.knobs["consensus_votes"] and v1 >= self.knobs["consensus"] * len(latest)
        return 0 if agreed else n
''', imports=("top_two",)),
    Block("width_cap", "pace", "width cap", "new", ("max_running",), '''
    def pace(self, obs, st, n):
        """Width cap: never more than `max_running` branches decode at once, however many may be opened in
        total; a new branch waits for a running one to finish or be abandoned."""
        return max(0, min(n, self.knobs["max_running"] - len(obs.running())))
'''),
)

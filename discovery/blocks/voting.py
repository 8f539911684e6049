"""Blocks that read the answers: votes (winner, confidence, votes counted) and confidence smoothing.

Each `code` is a method of the generated controller, written as a person would write it; its
docstring names the mechanism and says why it helps. `vote(obs)` returns ``(winner, confidence,
votes)``; `smooth(st, conf, again)` returns ``(level, trend)`` and is called twice a step, before
the step's decoding and after it (``again=True``).
"""

from __future__ import annotations

from .knobs import Block

__all__ = ["SMOOTH_BLOCKS", "VOTE_BLOCKS"]

VOTE_BLOCKS = (
    Block("completed_vote", "vote", "finished-answer vote", "asc, cmc", (), '''
    def vote(self, obs):
        """Finished-answer vote (asc, cmc): the majority of the finished branches' answers; the confidence
        is the Beta-posterior probability that the leader's share exceeds one half."""
        winner, v1, v2 = top_two(obs.completed_answers())
        return winner, (beta_confidence(v1, v2) if v1 else 0.0), len(obs.completed)
''', imports=("top_two", "beta_confidence")),
    Block("err_blind_vote", "vote", "ERR-blind vote", "new", (), '''
    def vote(self, obs):
        """ERR-blind vote: like the finished-answer vote, but a branch that ended without an extractable
        answer ("ERR") is no vote at all, so a run of failures cannot look like agreement."""
        pool = [a for a in obs.completed_answers() if a != "ERR"]
        winner, v1, v2 = top_two(pool)
        return winner, (beta_confidence(v1, v2) if v1 else 0.0), len(pool)
''', imports=("top_two", "beta_confidence")),
    Block("probe_vote", "vote", "probe-vote weighting", "new", ("probe_run",), '''
    def vote(self, obs):
        """Probe-vote weighting: every finished answer is a vote, and so is every running branch whose last
        `probe_run` probes all name an answer some branch finished with: such a branch nearly always ends
        on it, so the agreement counts before it pays for its last segments."""
        done = obs.completed_answers()
        finished, run = set(done), self.knobs["probe_run"]
        backing = [b.latest for b in obs.running() if b.latest in finished and len(b.answers) >= run
                   and all(a == b.latest for a in b.answers[-run:])]
        winner, v1, v2 = top_two(done + backing)
        return winner, (beta_confidence(v1, v2) if v1 else 0.0), len(done) + len(backing)
''', imports=("top_two", "beta_confidence")),
    Block("settled_vote", "vote", "settled-probe vote", "new", ("probe_run",), '''
    def vote(self, obs):
        """Settled-probe vote: every finished answer is a vote, and so is every running branch whose last
        `probe_run` probes all name the same answer (never "ERR"): a trace whose forced answer has stopped
        changing mostly ends on it, so its vote need not wait for the rest of the trace."""
        run = self.knobs["probe_run"]
        settled = [b.latest for b in obs.running() if len(b.answers) >= run and b.latest != "ERR"
                   and all(a == b.latest for a in b.answers[-run:])]
        pool = obs.completed_answers() + settled
        winner, v1, v2 = top_two(pool)
        return winner, (beta_confidence(v1, v2) if v1 else 0.0), len(pool)
''', imports=("top_two", "beta_confidence")),
    Block("short_trace_vote", "vote", "short-trace weighting", "new", (), '''
    def vote(self, obs):
        """Short-trace weighting: each finished answer weighs the shortest finished trace's cost over its
        own, so between answers with (nearly) equal counts the one reached by shorter reasoning wins:
        within a question the short traces are the more often right. The confidence is the finished-answer
        vote's, the winner's count against the strongest other answer's."""
        done = [obs.branches[i] for i in obs.completed]
        if not done:
            return None, 0.0, 0
        shortest = max(1, min(b.tokens for b in done))
        weight, count = {}, {}
        for b in done:
            weight[b.final] = weight.get(b.final, 0.0) + shortest / max(1, b.tokens)
            count[b.final] = count.get(b.final, 0) + 1
        winner = max(weight, key=weight.get)  # equal weights: the answer that finished first
        rival = max((c for a, c in count.items() if a != winner), default=0)
        return winner, beta_confidence(count[winner], rival), len(done)
''', imports=("beta_confidence",)),
    Block("latest_vote", "vote", "latest-answer vote", "parallel_probe", (), '''
    def vote(self, obs):
        """Latest-answer vote (parallel_probe): the majority of every unpruned branch's newest answer,
        finished or not ("ERR" never counts), so there is a winner from the first probe on."""
        latest = [b.latest for b in obs.active() if b.latest is not None and b.latest != "ERR"]
        winner, v1, v2 = top_two(latest)
        return winner, (beta_confidence(v1, v2) if v1 else 0.0), len(latest)
''', imports=("top_two", "beta_confidence")),
)

SMOOTH_BLOCKS = (
    Block("ema_momentum", "smooth", "confidence momentum", "cmc", ("ema_alpha", "T_ema"), '''
    def smooth(self, st, conf, again):
        """Confidence momentum (cmc): an EMA of the vote confidence, updated before and after each step's
        decoding (the second update replaces the first); the trend is its change over the last T_ema
        values, so a confidence that is still climbing is not mistaken for a settled one."""
        alpha = self.knobs["ema_alpha"]
        st["ema"] = (1 - alpha) * st["ema"] + alpha * conf
        if again:
            st["kept"][-1] = st["ema"]
        else:
            st["kept"].append(st["ema"])
        kept = st["kept"]
        return st["ema"], (kept[-1] - kept[0] if len(kept) >= 2 else 0.0)
''', state=(("ema", "0.0"), ("kept", 'deque(maxlen=k["T_ema"])')), imports=("deque",)),
    Block("raw_confidence", "smooth", "raw confidence", "asc", (), '''
    def smooth(self, st, conf, again):
        """Raw confidence (asc): the vote confidence as it is; the trend is its change since the previous
        step. Reacts at once, where an EMA would lag."""
        if not again:
            st["before"] = st["now"]
        st["now"] = conf
        return conf, conf - st["before"]
''', state=(("now", "0.0"), ("before", "0.0"))),
)

"""CMC, the Confidence Momentum Controller: widen while the vote's confidence trend is flat,
stop when a smoothed confidence is high and not falling, abandon branches that keep disagreeing.

Every knob is a monotone function of β ∈ [0, 1] (see `schedule`): β=0 is frugal, β=1 generous.
Confidence is the Beta-posterior confidence of the completed-answer vote (as in adaptive
consistency), smoothed by an EMA updated twice per step (before and after the step's probes);
its change over the last T_ema values is the momentum (`delta`).
"""

from __future__ import annotations

from collections import deque

from ..actions import Branch, Continue, Prune
from ..aggregate import majority
from ..base import GeneratorController, Param
from ..confidence import beta_confidence


class _Pool:
    """The completed-answer vote, counted as branches finish (the pool only grows), in first-seen order."""

    __slots__ = ("branches", "completed", "conf", "counts", "seen", "winner")

    def __init__(self, obs) -> None:
        self.branches, self.completed = obs.branches, obs.completed
        self.counts: dict[str, int] = {}
        self.seen, self.winner, self.conf = 0, None, 0.0

    def vote(self) -> tuple[str | None, float]:
        """(winner, confidence as in asc; 0 for an empty pool), as `top_two` of the whole pool gives it."""
        completed = self.completed
        if len(completed) != self.seen:
            counts, branches = self.counts, self.branches
            for i in completed[self.seen:]:
                answer = branches[i].final
                counts[answer] = counts.get(answer, 0) + 1
            self.seen = len(completed)
            winner, v1, v2 = None, 0, 0
            for answer, count in counts.items():  # ties to the first seen
                if count > v1:
                    winner, v1, v2 = answer, count, v1
                elif count > v2:
                    v2 = count
            self.winner, self.conf = winner, beta_confidence(v1, v2)
        return self.winner, self.conf


def _continues(n: int, segments: int) -> list[Continue]:
    """`Continue(i, segments)` for branch ids below `n`, built once (actions are immutable)."""
    cached = _CONTINUES.get(segments)
    if cached is None or len(cached) < n:
        cached = _CONTINUES[segments] = [Continue(i, segments=segments) for i in range(max(n, 64))]
    return cached


_CONTINUES: dict[int, list[Continue]] = {}


class ConfidenceMomentum(GeneratorController):
    name = "cmc"
    description = "Confidence Momentum Controller: EMA of vote confidence decides widen / stop / abandon"
    parameters = {"max_steps": Param(int, 500, low=1, help="hard cap on rounds")}
    beta_range = (0.0, 1.0)
    default_beta = 0.5
    budget_knobs = ("n_init", "max_branches", "warm_up", "abandon_patience", "T_ema", "burst_aligned",
                    "widen_burst", "min_complete", "conf_thresh")

    @classmethod
    def schedule(cls, beta: float) -> dict:
        return {
            "n_init": round(2 + 6 * beta),
            "max_branches": round(4 + 60 * beta),
            "warm_up": round(2 + 8 * beta),
            "abandon_patience": round(3 + 9 * beta),
            "T_ema": round(2 + 6 * beta),
            "ema_alpha": round(0.7 - 0.4 * beta, 4),
            "conf_thresh": round(0.85 + 0.12 * beta, 4),
            "delta_slack": round(0.04 - 0.03 * beta, 4),
            "burst_aligned": round(1 + 2 * beta),
            "widen_burst": round(1 + 3 * beta),
            "trend_thresh": round(0.04 - 0.03 * beta, 4),
            "min_complete": round(2 + 3 * beta),
        }

    def run(self, obs):
        k = self.knobs
        alpha, warm_up, patience, burst = k["ema_alpha"], k["warm_up"], k["abandon_patience"], k["burst_aligned"]
        conf_thresh, max_branches, widen_burst = k["conf_thresh"], k["max_branches"], k["widen_burst"]
        widen_from = max(1, warm_up // 2)
        branches, pool = obs.branches, _Pool(obs)
        ones, bursts = _continues(max_branches, 1), _continues(max_branches, burst)
        available = obs.branches_available
        first = k["n_init"] if available is None else min(k["n_init"], available)
        if first:
            yield [Branch(first)]
        alive = [b for b in branches if not (b.finished or b.pruned)]  # running, in opening order
        ema, history = 0.0, deque(maxlen=k["T_ema"])
        disagree: dict[int, int] = {}
        for step in range(self.params["max_steps"]):
            # 1-2: vote confidence of the completed pool, smoothed
            winner, conf = pool.vote()
            ema = (1 - alpha) * ema + alpha * conf
            history.append(ema)
            # 3: abandon branches that keep disagreeing with the pool winner
            batch: list = []
            if step >= warm_up and winner is not None:
                worst = 0
                for b in alive:
                    count = disagree[b.id] = disagree.get(b.id, 0) + 1 if b.latest != winner else 0
                    worst = max(worst, count)
                if worst >= patience:
                    deviant = sorted((b for b in alive if disagree[b.id] >= patience), key=lambda b: -disagree[b.id])
                    abandon = [b.id for b in deviant[:max(0, len(alive) - 2)]]
                    batch = [Prune(i) for i in abandon]
                    alive = [b for b in alive if b.id not in abandon]
            # 4: probe the alive branches, the most-probed first; bursts for aligned ones
            probe_order = sorted(alive, key=lambda b: -len(b.answers))
            if step >= warm_up:
                batch += [bursts[b.id] if b.latest == winner else ones[b.id] for b in probe_order]
            else:
                batch += [ones[b.id] for b in probe_order]
            if batch:
                yield batch
            alive = [b for b in alive if not (b.finished or b.pruned)]
            # 5: second EMA update of the step replaces the newest kept value
            winner, conf = pool.vote()
            ema = (1 - alpha) * ema + alpha * conf
            history[-1] = ema
            delta = history[-1] - history[0] if len(history) >= 2 else 0.0
            # 6-7: stop when confident and not falling, or when nothing is left to decode
            if (step >= warm_up and len(obs.completed) >= k["min_complete"]
                    and ema >= conf_thresh and delta >= -k["delta_slack"]):
                return winner
            if not alive:
                break
            # 8: widen while confidence is not rising and still below threshold
            if delta <= k["trend_thresh"] and step >= widen_from and ema < conf_thresh:
                room = max_branches - len(branches)
                if obs.branches_available is not None:
                    room = min(room, obs.branches_available)
                if min(widen_burst, room) > 0:
                    opened = len(branches)
                    yield [Branch(min(widen_burst, room))]
                    alive += [b for b in branches[opened:] if not (b.finished or b.pruned)]
        if obs.completed:
            return pool.vote()[0]
        return majority([b.latest for b in branches if not b.pruned])

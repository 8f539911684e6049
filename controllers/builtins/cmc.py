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
from ..aggregate import majority, top_two
from ..base import GeneratorController, Param
from ..confidence import beta_confidence


def _vote(pool: list[str]) -> tuple[str | None, float]:
    winner, v1, v2 = top_two(pool)
    return winner, (beta_confidence(v1, v2) if pool else 0.0)


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
        alpha, warm_up = k["ema_alpha"], k["warm_up"]
        available = obs.branches_available
        first = k["n_init"] if available is None else min(k["n_init"], available)
        if first:
            yield [Branch(first)]
        ema, history = 0.0, deque(maxlen=k["T_ema"])
        disagree: dict[int, int] = {}
        for step in range(self.params["max_steps"]):
            # 1-2: vote confidence of the completed pool, smoothed
            winner, conf = _vote(obs.completed_answers())
            ema = (1 - alpha) * ema + alpha * conf
            history.append(ema)
            # 3: abandon branches that keep disagreeing with the pool winner
            alive = obs.running()
            abandon: list[int] = []
            if step >= warm_up and winner is not None:
                for b in alive:
                    disagree[b.id] = disagree.get(b.id, 0) + 1 if b.latest != winner else 0
                deviant = sorted((b for b in alive if disagree[b.id] >= k["abandon_patience"]),
                                 key=lambda b: -disagree[b.id])
                abandon = [b.id for b in deviant[:max(0, len(alive) - 2)]]
                alive = [b for b in alive if b.id not in abandon]
            # 4: probe the alive branches, the most-probed first; bursts for aligned ones
            alive.sort(key=lambda b: -len(b.answers))
            burst = k["burst_aligned"]
            batch = [Prune(i) for i in abandon] + [
                Continue(b.id, segments=burst if step >= warm_up and b.latest == winner else 1)
                for b in alive]
            if batch:
                yield batch
            # 5: second EMA update of the step replaces the newest kept value
            winner, conf = _vote(obs.completed_answers())
            ema = (1 - alpha) * ema + alpha * conf
            history[-1] = ema
            delta = history[-1] - history[0] if len(history) >= 2 else 0.0
            # 6-7: stop when confident and not falling, or when nothing is left to decode
            if (step >= warm_up and len(obs.completed) >= k["min_complete"]
                    and ema >= k["conf_thresh"] and delta >= -k["delta_slack"]):
                return winner
            if not obs.running():
                break
            # 8: widen while confidence is not rising and still below threshold
            if delta <= k["trend_thresh"] and step >= max(1, warm_up // 2) and ema < k["conf_thresh"]:
                room = k["max_branches"] - len(obs.branches)
                if obs.branches_available is not None:
                    room = min(room, obs.branches_available)
                if min(k["widen_burst"], room) > 0:
                    yield [Branch(min(k["widen_burst"], room))]
        pool = obs.completed_answers()
        return majority(pool) if pool else majority([b.latest for b in obs.branches if not b.pruned])

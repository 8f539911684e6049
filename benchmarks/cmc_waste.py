"""Where cmc spends its tokens, measured on the search stores (AIME24 of the four Qwen3 models).

    python benchmarks/cmc_waste.py [--seeds 5] [--betas 0,0.2,0.5,0.8,1]

cmc is replayed here by a small instrumented re-implementation written from ../shared/replay/README.md
(the replay semantics and cmc's loop), so every branch can be followed: when it opened, whether it
finished and voted, was abandoned or was still running when cmc answered. Before it reports anything
it checks that the re-implementation plays every episode with the built-in `cmc`'s answer and tokens;
the run fails otherwise. Per β it reports the share of tokens by branch fate, the branches opened
before the first vote arrived, the tokens a branch spent after its probe answer had already settled on
its final answer, and what an oracle stop (the first step whose winner is the final answer) would
have cost. Results go to benchmarks/results/cmc_waste.json with the load average.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replay"
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
OUT = REPO / "benchmarks" / "results" / "cmc_waste.json"


def knobs(b: float) -> dict:
    """cmc's schedule (README table)."""
    return dict(n_init=round(2 + 6 * b), maxb=round(4 + 60 * b), warm=round(2 + 8 * b), pat=round(3 + 9 * b),
                T=round(2 + 6 * b), alpha=round(0.7 - 0.4 * b, 4), thr=round(0.85 + 0.12 * b, 4),
                slack=round(0.04 - 0.03 * b, 4), burst=round(1 + 2 * b), widen=round(1 + 3 * b),
                trend=round(0.04 - 0.03 * b, 4), minc=round(2 + 3 * b))


def top_two(pool: list[str]) -> tuple[str | None, int, int]:
    counts: dict[str, int] = {}
    for a in pool:
        counts[a] = counts.get(a, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: the first seen wins ties
    if not ranked:
        return None, 0, 0
    return ranked[0][0], ranked[0][1], ranked[1][1] if len(ranked) > 1 else 0


def confidence(v1: int, v2: int) -> float:
    from autotts.controllers import beta_confidence

    return beta_confidence(v1, v2) if v1 else 0.0


class Trace:
    """One recorded branch as cmc meets it: probe calls cost 500, the last call the rest."""

    def __init__(self, record: list, opened: int) -> None:
        self.probes, self.length, self.final = record
        self.opened, self.calls, self.cost, self.done, self.abandoned = opened, 0, 0, False, False
        self.answers: list[str] = []
        self.off, self.finished_at = 0, None

    def call(self) -> None:
        if self.calls < len(self.probes):
            self.answers.append(self.probes[self.calls])
            self.calls, self.cost = self.calls + 1, self.cost + 500
            return
        self.cost += max(0, self.length - 500 * len(self.probes))
        self.done = True
        self.answers.append(self.final)


def play_cmc(question: dict, seed: int, b: float) -> tuple[str | None, list[Trace], list[tuple[str | None, int]]]:
    """cmc's episode; returns its answer, its branches and (winner, tokens so far) after every step."""
    k, order = knobs(b), list(range(len(question["each_branch"])))
    random.Random(seed).shuffle(order)
    branches: list[Trace] = []
    pool: list[str] = []
    steps: list[tuple[str | None, int]] = []

    def open_branches(n: int, step: int) -> None:
        for _ in range(min(n, len(order) - len(branches))):
            t = Trace(question["each_branch"][order[len(branches)]], step)
            branches.append(t)
            t.call()

    def finish(t: Trace, step: int) -> None:
        pool.append(t.final)
        t.finished_at = step

    open_branches(k["n_init"], -1)
    for t in branches:
        if t.done:
            finish(t, -1)
    ema, kept = 0.0, []
    for step in range(500):
        winner, v1, v2 = top_two(pool)
        ema = (1 - k["alpha"]) * ema + k["alpha"] * confidence(v1, v2)
        kept = [*kept, ema][-k["T"]:]
        alive = [t for t in branches if not t.done and not t.abandoned]
        if step >= k["warm"] and winner is not None:
            for t in alive:
                t.off = t.off + 1 if t.answers[-1] != winner else 0
            deviant = sorted((t for t in alive if t.off >= k["pat"]), key=lambda t: -t.off)
            for t in deviant[:max(0, len(alive) - 2)]:
                t.abandoned = True
        for t in sorted((t for t in branches if not t.done and not t.abandoned), key=lambda t: -t.calls):
            for _ in range(k["burst"] if step >= k["warm"] and t.answers[-1] == winner else 1):
                t.call()
                if t.done:
                    finish(t, step)
                    break
        winner, v1, v2 = top_two(pool)
        ema = (1 - k["alpha"]) * ema + k["alpha"] * confidence(v1, v2)
        kept[-1] = ema
        delta = kept[-1] - kept[0] if len(kept) >= 2 else 0.0
        steps.append((winner, sum(t.cost for t in branches)))
        if step >= k["warm"] and len(pool) >= k["minc"] and ema >= k["thr"] and delta >= -k["slack"]:
            return winner, branches, steps
        if all(t.done or t.abandoned for t in branches):
            break
        if delta <= k["trend"] and step >= max(1, k["warm"] // 2) and ema < k["thr"]:
            open_branches(min(k["widen"], k["maxb"] - len(branches)), step)
    if pool:
        return top_two(pool)[0], branches, steps
    return top_two([t.answers[-1] for t in branches if not t.abandoned])[0], branches, steps


def settled_tail(t: Trace) -> int:
    """Tokens a finished branch spent after its probe answers had settled on its final answer."""
    j = len(t.answers) - 1
    while j > 0 and t.answers[j - 1] == t.answers[-1]:
        j -= 1
    return max(0, t.cost - 500 * (j + 1))


def measure(stores: dict[str, list], b: float, seeds: int) -> dict:
    s: collections.Counter = collections.Counter()
    n = 0
    for questions in stores.values():
        for seed in range(seeds):
            for q in questions:
                answer, branches, steps = play_cmc(q, seed, b)
                n += 1
                total = sum(t.cost for t in branches)
                s["tokens"] += total
                s["correct"] += answer == q["gold_answer"]
                first_vote = min((t.finished_at for t in branches if t.done), default=None)
                for i, t in enumerate(branches):
                    fate = "voted" if t.done else "abandoned" if t.abandoned else "running_at_stop"
                    s[fate] += t.cost
                    s["n_" + fate] += 1
                    s["widened_" + fate] += t.cost if i >= knobs(b)["n_init"] else 0
                    s["settled_tail"] += settled_tail(t) if t.done else 0
                    before = first_vote is None or t.opened < first_vote
                    s["opened_before_first_vote"] += before
                s["oracle_stop"] += next((c for w, c in steps if w == answer), total)
    t = s["tokens"]
    return {"beta": b, "episodes": n, "accuracy_pct": round(100 * s["correct"] / n, 3), "tokens": round(t / n, 1),
            "share": {k: round(s[k] / t, 3) for k in ("voted", "abandoned", "running_at_stop")},
            "share_widened_never_voted": round((s["widened_abandoned"] + s["widened_running_at_stop"]) / t, 3),
            "branches_per_episode": {k: round(s["n_" + k] / n, 2) for k in ("voted", "abandoned", "running_at_stop")},
            "opened_before_first_vote_per_episode": round(s["opened_before_first_vote"] / n, 2),
            "share_after_probe_settled": round(s["settled_tail"] / t, 3),
            "oracle_stop_share": round(s["oracle_stop"] / t, 3)}


def check_against_builtin(stores: dict[str, list], paths: list[str], b: float, seeds: int) -> None:
    """The re-implementation must play every episode as the built-in cmc does."""
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

    cells = evaluate([f"cmc:beta={b:g}"], resolve_stores(paths), EvalOptions(seeds=seeds), workers=1, progress=False)
    for cell, questions in zip(cells, stores.values(), strict=True):
        for e in cell.episodes:
            answer, branches, _ = play_cmc(questions[e.question], e.seed, b)
            if answer != e.answer or sum(t.cost for t in branches) != e.tokens:
                raise SystemExit(f"re-implementation differs from cmc at beta={b} {cell.model} q{e.question} s{e.seed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--betas", type=lambda t: [float(x) for x in t.split(",")], default=[0.0, 0.2, 0.5, 0.8, 1.0])
    args = parser.parse_args(argv)
    paths = [str(args.data / m / "aime24.json.gz") for m in MODELS]
    stores = {}
    for model, path in zip(MODELS, paths, strict=True):
        with gzip.open(path) as fh:
            stores[model] = json.load(fh)
    load = os.getloadavg()
    rows = []
    for b in args.betas:
        check_against_builtin(stores, paths, b, args.seeds)
        rows.append(measure(stores, b, args.seeds))
        print(json.dumps(rows[-1]), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                               "cpus": os.cpu_count(), "load_average_at_start": load, "load_average_at_end":
                               os.getloadavg(), "stores": "aime24 (search data)", "seeds": args.seeds,
                               "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

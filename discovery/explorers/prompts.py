"""What an LLM explorer reads: the task, the SDK in brief, and the history rendered compactly.

Everything here is built from search-store results only; held-out numbers never reach a prompt.
"""

from __future__ import annotations

from typing import Any

from ..evidence import render_evidence
from ..history import eligible

__all__ = ["EXAMPLE", "SYSTEM", "render_history", "render_record", "round_prompt"]

EXAMPLE = '''from autotts.controllers import Branch, Continue, GeneratorController, Prune, beta_confidence, top_two


class LockstepVote(GeneratorController):
    name = "lockstep_vote"
    description = "open a few branches, decode them in lockstep, stop when the finished answers agree"
    beta_range = (0.0, 1.0)
    default_beta = 0.5
    budget_knobs = ("n", "threshold")

    @classmethod
    def schedule(cls, beta):
        return {"n": round(4 + 28 * beta), "threshold": round(0.8 + 0.15 * beta, 4)}

    def run(self, obs):
        k = self.knobs
        yield [Branch(k["n"])]
        while obs.running():
            yield [Continue(b.id) for b in obs.running()]
            winner, v1, v2 = top_two(obs.completed_answers())
            if winner is not None and beta_confidence(v1, v2) >= k["threshold"]:
                return winner
        return top_two(obs.completed_answers())[0]
'''

SYSTEM = f"""You design test-time scaling controllers for reasoning models and improve them from measurements.

A controller runs one episode per question over recorded trajectories: up to 128 sampled reasoning branches per
question, each decoded in segments of 500 tokens; after every segment a probe reveals the answer the branch would give
if cut there ("ERR" = none). Actions (from autotts.controllers), returned as a batch (list) per step:
Branch(n, segments=1, probe=True) opens n new branches; Continue(i, segments=1) decodes branch i further (None: to
the end); Probe(i); Prune(i) stops a branch (its tokens stay spent); Answer(text) ends the episode. A branch that
reaches its end reveals its final answer and becomes finished. Cost = tokens decoded (probes are free).
The Observation has: branches (each: id, depth, finished, pruned, answers, latest, final, tokens), completed (ids in
finishing order), completed_answers(), running(), active(), tokens_spent, branches_available, step, beta, memory.
Helpers: majority, top_two(answers) -> (winner, v1, v2), vote_counts, beta_confidence(v1, v2) (Beta-posterior
confidence that the leader's share > 1/2).
Votes: the answers you see are already joined by the store's aggregator (equivalent answers such as 1/2 and 0.5
arrive as one string when it is math), so counting strings counts classes. A class attribute aggregator = "exact",
"normalized" or "math" names the vote the controller is meant for instead; leave it unset to use the store's (what
the live gateway uses for the same answers).

Rules: write one Python module with exactly one subclass of GeneratorController (a generator `run(obs)` yielding
batches and returning the answer string) or Controller (`step(obs) -> list`). It must be deterministic, keep episode
state in local variables or obs.memory (never on self), import only autotts.controllers and small stdlib modules
(math, collections, itertools, functools, statistics, heapq, bisect, dataclasses, typing, re), and must not use
open/eval/exec/__import__/getattr. It MUST be beta-parameterised: beta_range = (0.0, 1.0), default_beta, a
classmethod schedule(beta) -> dict of knobs used through self.knobs, and budget_knobs naming the knobs that bound
spending (they must not decrease as beta grows). Measured tokens must not fall as beta grows, or the candidate is
rejected. Code runs in a sandbox without network, files or environment; crashes and illegal actions come back as
errors.

Each candidate is evaluated over a beta sweep on the search stores; by default a point's objective is accuracy% -
gamma*tokens, and a candidate's objective is the mean over its sweep (the round message says when the run scores
tokens saved against the cmc sweep instead). Aim for curves that dominate the built-ins (more accurate for fewer
tokens). Evaluations are raced: a candidate first meets a few seeds, and only one that can still beat the best
complete candidate on the same seeds goes on to the full sweep; a raced-out candidate keeps its (noisier) scores,
shown with their standard errors, but cannot be submitted as an artifact. Every result carries trace evidence: how
many wrong episodes stopped too early (the branches still running would have voted the gold), pruned branches that
would have won, never opened a branch ending on the gold, or were outvoted, and how many branches were let finish
after the vote had settled. Use the tools: evaluate_controller, inspect_trace, read_history, then submit your best
candidate.

Example of a valid controller:
```python
{EXAMPLE}```"""


def _curve_table(curve: list[dict[str, Any]], gamma: float) -> str:
    rows = ["beta    acc%  ± se    tokens/question   acc - gamma*tokens"]
    for p in curve:
        beta = "-" if p["beta"] is None else f"{p['beta']:.2f}"
        se = f"{p['acc_se']:5.2f}" if p.get("acc_se") is not None else "    -"
        rows.append(f"{beta:<7} {p['acc']:6.2f} {se}  {p['tokens']:>14,.0f}   {p['acc'] - gamma * p['tokens']:8.3f}")
    return "\n".join(rows)


def render_record(record: dict[str, Any], gamma: float, *, grids: int = 1) -> str:
    """One evaluation as the explorer sees it."""
    head = f"candidate {record['id']}: status {record['status']}"
    if record.get("objective") is not None:
        head += f", objective {record['objective']:.3f}"
        if record.get("objective_se"):
            head += f" ± {record['objective_se']:.3f}"
    if record.get("seeds") is not None:
        head += f" ({len(record['seeds'])} seeds per store)"
    parts = [head]
    if record.get("raced_out"):
        parts.append(f"raced out (not run on every seed, so not eligible as an artifact): {record['raced_out']}")
    if record.get("note"):
        parts.append(f"note: {record['note']}")
    if record.get("errors"):
        parts.append("errors:\n" + "\n".join(f"- {e}" for e in record["errors"][:5]))
    if record.get("curve"):
        parts.append(_curve_table(record["curve"], gamma))
    if record.get("beta_check"):
        parts.append("beta check: " + "; ".join(record["beta_check"]))
    if record.get("dominates"):
        parts.append("dominates built-ins: " + ", ".join(record["dominates"]))
    evidence = render_evidence(record.get("evidence"), examples=2 if grids else 0)
    if evidence:
        parts.append(evidence)
    for grid in (record.get("grids") or [])[:grids]:
        parts.append("a wrong episode:\n" + grid["text"])
    return "\n".join(parts)


def render_history(records: list[dict[str, Any]], baselines: list[dict[str, Any]], gamma: float) -> str:
    lines = ["built-ins on the search stores (acc%, tokens/question):"]
    lines += [f"  {b['label']:<16} {b['acc']:6.2f} {b['tokens']:>12,.0f}" for b in baselines]
    lines.append("candidates (id, round, status, objective, acc%/tokens at each beta):")
    for r in records:
        curve = " ".join(f"{p['acc']:.1f}/{p['tokens'] / 1000:.0f}k" for p in r.get("curve") or [])
        obj = "" if r.get("objective") is None else f"{r['objective']:.3f}"
        raced = f" (raced out at {len(r.get('seeds') or [])} seeds)" if r.get("raced_out") else ""
        lines.append(f"  {r['id']} r{r.get('round', 0)} {r['status']:<15} {obj:>8} {curve}{raced}")
    return "\n".join(lines)


OBJECTIVE_TEXT = {
    "gamma": "A candidate scores the mean over its beta sweep of accuracy% - gamma*tokens.",
    "cmc-savings": ("A candidate scores the tokens it saves against the cmc sweep at matched accuracy: for every "
                    "cmc point, the % of its tokens the candidate's curve needs to reach its accuracy (-100 if it "
                    "never does); the objective is half the mean and half the worst of those savings."),
}


def round_prompt(records: list[dict[str, Any]], baselines: list[dict[str, Any]], gamma: float,
                 sources: dict[str, str], round_no: int, max_evaluations: int, objective: str = "gamma") -> str:
    """The user message that opens a round: history, the best candidates' code, one failure grid."""
    parts = [f"Round {round_no}. gamma = {gamma:g} accuracy points per token. {OBJECTIVE_TEXT[objective]} You may "
             f"evaluate up to {max_evaluations} candidates this round, then call submit.",
             render_history(records, baselines, gamma)]
    best = sorted((r for r in records if eligible(r)), key=lambda r: -r["objective"])[:2]
    for r in best:
        parts.append(render_record(r, gamma, grids=1) + "\ncode:\n```python\n" + sources.get(r["id"], "") + "```")
    failed = [r for r in records if r["status"] != "ok"][-2:]
    for r in failed:
        parts.append(render_record(r, gamma, grids=0))
    if not records:
        parts.append("No candidates yet: start from the example in the instructions or your own idea.")
    return "\n\n".join(parts)

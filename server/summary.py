"""The response pieces of a finished job: choices, OpenAI `usage`, and the `tts` object per episode.

Kept apart from `Gateway` because both response paths (one JSON body in serving.py, the final chunks
in streaming.py) build the same pieces from a job and its outcomes, and nothing here has state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .executor import EpisodeOutcome
from .protocol import usage_dict

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["episode_tts", "summary"]

_SUMMED = ("branches", "pruned", "probes", "forced_probes", "rounds", "engine_calls", "decode_tokens", "probe_tokens",
           "final_calls", "final_tokens",
           "cached_tokens", "prompt_tokens", "tokens_spent")


def summary(job: Job, outcomes: list[EpisodeOutcome], engine: str) -> tuple[list[tuple], dict, dict]:
    """(choices as (content, reasoning, finish_reason, token IDs or None), usage, tts)."""
    ledgers = [b.ledger for b in job.backends]
    usage = usage_dict(sum(x.prompt_tokens for x in ledgers), sum(x.completion_tokens for x in ledgers),
                       sum(x.cached_tokens for x in ledgers))
    ids = job.return_token_ids
    choices = [(o.content, o.reasoning, "length" if o.budget_exhausted else "stop", o.token_ids if ids else None)
               for o in outcomes]
    episodes = [episode_tts(job, i, o, engine) for i, o in enumerate(outcomes)]
    tts = episodes[0] if len(episodes) == 1 else {**_totals(episodes), "episodes": episodes}
    return choices, usage, tts


def episode_tts(job: Job, index: int, o: EpisodeOutcome, engine: str) -> dict[str, Any]:
    """What the controller did in episode `index` of `job` (the response's ``tts`` object)."""
    ledger, sel = o.ledger, job.selection
    return {"controller": sel.name, "spec": job.controller.spec if sel.controller else "none",
            "version": sel.version, "beta": job.controller.beta, "arm": sel.arm, "source": sel.source,
            "engine": engine, "seed": job.seeds[index], **job.source,
            "branches": len(o.obs.branches), "pruned": o.prunes, "probes": o.probes,
            "forced_probes": ledger.forced_probes, "rounds": o.rounds,
            "engine_calls": ledger.calls, "decode_tokens": ledger.decode_tokens,
            "probe_tokens": ledger.probe_tokens, "final_calls": ledger.final_calls,
            "final_tokens": ledger.final_tokens, "cached_tokens": ledger.cached_tokens,
            "prompt_tokens": ledger.prompt_tokens, "tokens_spent": o.obs.tokens_spent,
            "votes": o.votes, "vote": o.vote, "answer": o.answer, "winner_branch": o.winner,
            "extractor": job.reply.extractor.spec(), "aggregator": job.aggregator.spec, "response": o.response,
            "budget_exhausted": o.budget_exhausted, "wall_s": round(o.wall_s, 4),
            **({"overshoot_tokens": ledger.overshoot_tokens} if ledger.overshoot_tokens else {}),
            **({"fallback": job.fallbacks[index]} if index in job.fallbacks else {})}


def _totals(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    first = episodes[0]
    keep = {k: first[k] for k in ("controller", "spec", "version", "beta", "arm", "source", "engine")}
    return {**keep, **{k: sum(e[k] for e in episodes) for k in _SUMMED}}

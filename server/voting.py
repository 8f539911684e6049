"""What model-backed aggregators need, computed in the gateway (the trusted process), never in a controller.

The SDK's semantic and judge aggregators are pure: they cluster answers from embeddings, or read a judge's
reply, that someone else computed (`autotts.controllers.aggregators`). This module is that someone for live
episodes: after the controller answered, `Voter.settle` embeds the final pool (an OpenAI-compatible
``/v1/embeddings`` server, e.g. a vLLM pooling model, or the local all-MiniLM model) or asks the episode's
own engine, on the request's replica, to judge the distinct candidates (universal self-consistency), and
hands the result to `EpisodeMachine.settle`, which decides the answer exactly as replay does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autotts.controllers.aggregators import judge_prompt
from autotts.controllers.episode import EpisodeMachine
from autotts.engines.backends import BranchBackend
from autotts.engines.embeddings import HTTPEmbeddings

__all__ = ["Voter"]


class Voter:
    """The gateway's embedding source and judge settings (one per gateway)."""

    def __init__(self, embeddings_url: str | None = None, embeddings_model: str | None = None, *,
                 judge_max_tokens: int = 32, timeout_s: float = 60.0) -> None:
        self.http = HTTPEmbeddings(embeddings_url, embeddings_model, timeout_s=timeout_s) if embeddings_url else None
        self.judge_max_tokens = judge_max_tokens

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self.http is not None:
            return await self.http.embed(texts)
        from autotts.offline.embeddings import local_embeddings

        return await asyncio.to_thread(local_embeddings, texts)

    async def settle(self, machine: EpisodeMachine, backend: BranchBackend) -> None:
        """The machine's final vote, with the embeddings or the judge's reply its aggregator needs."""
        needs = machine.aggregator.needs
        extra: dict[str, Any] = {}
        pool = machine.pool()
        if needs == "embeddings" and pool:
            extra["vectors"] = await self.embed(pool)
        elif needs == "judge" and pool:
            candidates = machine.aggregator.candidates(pool, machine.equivalence)
            if len(candidates) > 1:  # one candidate needs no judge
                extra["judge_reply"] = await backend.ask(judge_prompt(machine.obs.question, candidates),
                                                         self.judge_max_tokens)
        machine.settle(**extra)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

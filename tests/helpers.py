"""Test helpers: tiny hand-made stores whose answers can be worked out by hand, and a gateway app driven
over ASGI (no socket) with its lifespan."""

from __future__ import annotations

from autotts.offline.env import branch_order
from autotts.offline.store import ReplayStore

Branch = tuple[list[str], int, str]  # (probe answers, branch tokens, final answer)


def store_in_opening_order(branches: list[Branch], *, seed: int = 0, gold: str = "a",
                           segment_tokens: int = 500, question: str = "q?") -> ReplayStore:
    """A one-question store laid out so that `seed` opens `branches` in the order given."""
    order = branch_order(len(branches), seed)
    rows: list[Branch | None] = [None] * len(branches)
    for opened, row in enumerate(order):
        rows[row] = branches[opened]
    record = {"question": question, "gold_answer": gold, "branches": rows}
    return ReplayStore.from_records("tiny", "hand", segment_tokens, [record])


def short(final: str, tokens: int = 500) -> Branch:
    """A branch with one probe (its final answer)."""
    return ([final], tokens, final)


def run_app(app, requests):
    """Run `requests(client)` (an async function of an httpx client) against `app`; return its result."""
    import asyncio

    import httpx

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://gw") as client:
            return await requests(client)

    return asyncio.run(go())

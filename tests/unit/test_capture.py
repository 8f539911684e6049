"""Traffic capture (server/capture.py, offline/capture_store.py): sampling, rotation, redaction, feedback
labels as golds, bad files, and that a failing capture never fails a request.

The gateway runs in-process over httpx's ASGI transport on the replay engine (one bundled store), so
every captured episode is a real served one; the lifespan's close flushes the writer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
import pyarrow.parquet as pq
from autotts.controllers.actions import Branch, Continue
from autotts.controllers.episode import STOP, EpisodeMachine, Unit
from autotts.offline.env import ReplayEnv
from autotts.offline.evaluate import EvalOptions, bundled_data_dir, evaluate
from autotts.offline.importer import find_data_files
from autotts.offline.store import ReplayStore, StoreError, load_store
from autotts.server.app import build_app
from autotts.server.capture import TrafficCapture, branch_row
from autotts.server.config import ConfigError, GatewayConfig

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
QUESTIONS = load_store(STORE).questions
LEAF = ("Qwen3-8B", "seg500")


def serve(tmp: Path, requests, **config):
    """Run `requests(client)` against a fresh app capturing into `tmp`; returns (result, metrics text)."""
    cfg = GatewayConfig.load(overrides={"stores": [str(STORE)], "capture_dir": str(tmp), **config})
    app = build_app(cfg)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://gw") as client:
            result = await requests(client)
        return result, app.state.gateway.metrics.render().decode()  # after close: everything is written

    return asyncio.run(go())


async def ask(client, question: str, spec: str = "sc:n=4", seed: int = 0) -> dict:
    response = await client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": question}], "seed": seed, "tts": {"controller": spec}})
    assert response.status_code == 200, response.text
    return response.json()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def capture_files(tmp: Path) -> list[Path]:
    return sorted(tmp.rglob("capture-*.parquet"))


def test_rate_zero_writes_nothing(tmp_path: Path) -> None:
    async def go(c):
        return [await ask(c, QUESTIONS[i]) for i in range(3)]

    _, metrics = serve(tmp_path / "cap", go, capture_rate=0)
    assert not (tmp_path / "cap").exists()
    assert metric(metrics, "autotts_captured_total") == 0


def test_rate_one_captures_every_request_in_rotated_files(tmp_path: Path) -> None:
    async def go(c):
        return [await ask(c, QUESTIONS[i % 3], seed=i) for i in range(5)]

    bodies, metrics = serve(tmp_path, go, capture_rate=1, capture_rows_per_file=2)
    files = capture_files(tmp_path)
    assert [f.parent.relative_to(tmp_path).parts for f in files] == [LEAF] * 3
    per_file = [len(set(pq.read_table(f, columns=["completion_id"]).column(0).to_pylist())) for f in files]
    assert per_file == [2, 2, 1]  # at most capture_rows_per_file episodes per file
    assert metric(metrics, "autotts_captured_total") == 5 and metric(metrics, "autotts_capture_errors_total") == 0
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    for body in bodies:  # each episode's rows are what it served: 4 full reads, their tokens, their vote
        mine = sorted((r for r in rows if r["completion_id"] == body["id"]), key=lambda r: r["opened"])
        tts = body["tts"]
        assert len(mine) == tts["branches"] == 4 and all(r["complete"] and not r["pruned"] for r in mine)
        assert sum(r["branch_tokens"] for r in mine) == tts["tokens_spent"]
        finals = [r["final_answer"] for r in mine]
        top = max(Counter(finals).values())
        assert body["tts"]["answer"] == next(a for a in finals if finals.count(a) == top)
        assert {r["spec"] for r in mine} == {"sc:n=4"} and {r["seed"] for r in mine} == {tts["seed"]}
    for f in files:  # every rotated file is a replay store on its own (no golds yet)
        alone = load_store(f)
        assert alone.segment_tokens == 500 and set(alone.golds) == {None}
    merged = load_store(tmp_path / Path(*LEAF))  # the leaf merges questions across files and requests
    assert merged.n_questions == 3 and [merged.n_branches(i) for i in range(3)] == [8, 8, 4]
    assert merged.questions == QUESTIONS[:3]
    assert find_data_files([tmp_path]) == [tmp_path / Path(*LEAF)]


def test_sampling_follows_the_rate(tmp_path: Path) -> None:
    capture = TrafficCapture(tmp_path, rate=0.25)
    decisions = [capture.wants(f"chatcmpl-{i:08d}") for i in range(8000)]
    assert abs(sum(decisions) / len(decisions) - 0.25) < 0.025  # ±5 standard deviations
    assert decisions == [capture.wants(f"chatcmpl-{i:08d}") for i in range(8000)]  # same id, same decision

    async def go(c):
        return [await ask(c, QUESTIONS[i % 5], spec="sc:n=2", seed=i) for i in range(40)]

    bodies, metrics = serve(tmp_path / "cap", go, capture_rate=0.5)
    half = TrafficCapture(tmp_path, rate=0.5)  # the gateway's decision, recomputed from the response ids
    expected = {b["id"] for b in bodies if half.wants(b["id"])}
    captured = {r for f in capture_files(tmp_path / "cap")
                for r in pq.read_table(f, columns=["completion_id"]).column(0).to_pylist()}
    assert captured == expected and 0 < len(expected) < 40
    assert metric(metrics, "autotts_captured_total") == len(expected)


def test_redaction_hides_the_prompt_and_the_store_still_evaluates(tmp_path: Path) -> None:
    secret = "  " + QUESTIONS[7] + "\n"

    async def go(c):
        body = await ask(c, secret, spec="cmc:beta=0.5")
        ok = await c.post("/v1/feedback", json={"id": body["id"], "gold": "7"})
        assert ok.status_code == 200
        return body

    body, _ = serve(tmp_path, go, capture_rate=1, capture_redact=True)
    needle = QUESTIONS[7][:40]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name.split("-")[0] for p in files} == {"capture", "labels"}
    for path in files:
        assert needle.encode() not in path.read_bytes()
        if path.suffix == ".parquet":  # decompressed too: every cell and the metadata
            table = pq.read_table(path)
            assert needle not in json.dumps(table.to_pylist()) + str(table.schema.metadata)
    store = load_store(tmp_path / Path(*LEAF))
    assert store.questions[0].startswith("[redacted] sha256:") and store.golds == ["7"]
    cell = evaluate(["cmc:beta=0.5"], [store], EvalOptions(seeds=3), workers=1, progress=False)[0]
    assert cell.row()["failed"] == 0 and len(cell.episodes) == 3
    assert body["tts"]["branches"] == store.n_branches(0)


def test_feedback_labels_become_golds(tmp_path: Path) -> None:
    async def go(c):
        bodies = [await ask(c, QUESTIONS[i], spec="sc:n=3", seed=i) for i in range(4)]
        labels = [{"gold": "not-the-answer"}, {"correct": True}, {"correct": False}, None]
        for body, label in zip(bodies, labels, strict=True):
            if label is not None:
                assert (await c.post("/v1/feedback", json={"id": body["id"], **label})).status_code == 200
        return bodies

    bodies, _ = serve(tmp_path, go, capture_rate=1)
    store = load_store(tmp_path / Path(*LEAF))
    served = bodies[1]["tts"]["answer"]
    assert store.golds == ["not-the-answer", served, None, None]
    assert store.meta["labelled"] == 3 and store.meta["questions_with_gold"] == 2
    cell = evaluate(["sc:n=3"], [store], EvalOptions(seeds=2), workers=1, progress=False)[0]
    assert [e.correct for e in cell.episodes if e.seed == 0] == [False, True, None, None]
    assert cell.row()["accuracy_pct"] == 50.0  # only the two questions with a gold count


def test_corrupt_files_are_named(tmp_path: Path) -> None:
    async def go(c):
        return await ask(c, QUESTIONS[0])

    serve(tmp_path, go, capture_rate=1)
    leaf = tmp_path / Path(*LEAF)
    bad = leaf / "capture-20000101T000000-ffffff-000001.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(StoreError, match=re.escape(str(bad))):
        load_store(leaf)
    bad.unlink()
    labels = leaf / "labels-ffffff.jsonl"
    labels.write_text('{"completion_id": "x", "gold": "1"}\n{"completion_id": \n')
    with pytest.raises(StoreError, match=re.escape(f"{labels}: line 2")):
        load_store(leaf)


def test_a_failing_capture_never_fails_the_request(tmp_path: Path) -> None:
    (tmp_path / "Qwen3-8B").write_text("a file where the model's directory should be")

    async def go(c):
        return [await ask(c, QUESTIONS[i]) for i in range(3)]

    bodies, metrics = serve(tmp_path, go, capture_rate=1, capture_rows_per_file=1)
    assert len(bodies) == 3 and all(b["choices"][0]["message"]["content"] for b in bodies)
    assert metric(metrics, "autotts_capture_errors_total") == 3 and metric(metrics, "autotts_captured_total") == 0


def test_branch_rows_of_truncated_and_finished_branches() -> None:
    # live: branch 0 decoded 3 segments, probed at depths 1 and 3, then pruned; branch 1 finished at
    # depth 4 after a probe at depth 2; branch 2 was opened but the budget stopped it before any segment
    machine = EpisodeMachine(0, "q", segment_tokens=500)
    plan = machine.plan([Branch(3, segments=None)])
    plan.results.update({(0, 0): [Unit(500, 1, "5"), Unit(500, 2), Unit(480, 3, "6")],
                         (0, 1): [Unit(500, 1), Unit(500, 2, "1"), Unit(500, 3), Unit(200, 4, "9", True)],
                         (0, 2): [STOP]})
    machine.apply(plan)
    cut, done, unstarted = machine.obs.branches
    assert machine.budget_exhausted
    row = branch_row(cut, 1480)
    assert (row["probe_answers"], row["final_answer"], row["complete"], row["revealed_depths"]) == \
        (["5", "ERR"], "6", False, [1])
    assert branch_row(done, 1700)["probe_answers"] == ["ERR", "1", "ERR"]
    assert branch_row(unstarted, 0) is None  # opened, never decoded: nothing to replay
    # replayed: a truncated branch finishes at its last recorded segment with its last answer, Δ = 500
    store = ReplayStore.from_records("m", "d", 500, [{"question": "q", "gold_answer": "6", "branches": [
        (row["probe_answers"], row["branch_tokens"], row["final_answer"])]}])
    env = ReplayEnv(store)
    env.reset(0, 0)
    env.step([Branch()])
    obs, _, _, _ = env.step([Continue(0, segments=None, probe=True)])
    assert obs.branches[0].answers == ["5", "ERR", "6"] and obs.branches[0].final == "6"
    assert obs.tokens_spent == 1480  # 2 × 500 + (1480 − 1000)


def test_config_validation(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for overrides, message in (({"capture_rate": 1.5}, "capture_rate must be a fraction in"),
                               ({"capture_rate": -0.1}, "capture_rate must be a fraction in"),
                               ({"capture_rows_per_file": 0}, "capture_rows_per_file must be >= 1"),
                               ({"capture_dir": str(tmp_path / "file"), "capture_rate": 0.5}, "must be a directory")):
        with pytest.raises(ConfigError, match=message):
            GatewayConfig.load(overrides=overrides)
    assert GatewayConfig.load(overrides={"capture_dir": str(tmp_path / "new" / "dir"),
                                         "capture_rate": "0.1"}).capture_rate == 0.1


def test_buffered_episodes_are_written_while_serving(tmp_path: Path) -> None:
    cfg = GatewayConfig.load(overrides={"stores": [str(STORE)], "capture_dir": str(tmp_path), "capture_rate": 1})
    app = build_app(cfg)
    app.state.gateway.capture.flush_interval_s = 0.2  # far below the default 30 s

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://gw") as client:
            await ask(client, QUESTIONS[0])
            for _ in range(100):  # the file appears before shutdown, once the episode waited its interval
                if capture_files(tmp_path):
                    return True
                await asyncio.sleep(0.05)
            return False

    assert asyncio.run(go())
    assert len(capture_files(tmp_path)) == 1  # and shutdown had nothing left to write

"""A/B arms end to end on a real socket, replay engine: split, stickiness, feedback accuracy, `autotts ab report`.

Two arms at 50/50 (``sc:n=8`` and ``cmc`` at β=0.2). 300 distinct users each send one question (question
i mod 30, seed i div 30), then 60 of them come back with another question. Every completion is labelled
through ``POST /v1/feedback`` with the store's gold answer. Checked: the share of users in each arm is
within 4 binomial standard deviations of 1/2; a returning user stays in their arm; the per-arm accuracy
counters on ``/metrics`` equal the accuracy of exactly those (question, seed) episodes replayed offline
with `autotts.offline.episode.run_episode`; ``autotts ab report --metrics-url <gateway>/metrics`` lists
both arms with their accuracy.
"""

from __future__ import annotations

import math
import statistics

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.cli.main import main
from autotts.controllers import load
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.ab_report import compare_tokens, fetch_samples, summarize
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer
from autotts.server.config import GatewayConfig

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
ARMS = [{"name": "sc8", "controller": "sc:n=8", "beta": None, "weight": 1},
        {"name": "cmc", "controller": "cmc", "beta": 0.2, "weight": 1}]
SPECS = {"sc8": "sc:n=8", "cmc": "cmc:beta=0.2"}
USERS, RETURNING = 300, 60


def test_two_arms_split_stickiness_feedback_and_report(capsys: pytest.CaptureFixture[str]) -> None:
    store = load_store(STORE)
    nq = len(store.questions)
    app = build_app(GatewayConfig.load(overrides={"stores": [str(STORE)], "arms": ARMS}))
    served: list[tuple[str, int, int, str]] = []  # (user, question, seed, arm)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        def ask(user: str, q: int, seed: int) -> str:
            response = client.post("/v1/chat/completions", json={
                "model": "Qwen3-8B", "user": user, "seed": seed,
                "messages": [{"role": "user", "content": store.questions[q]}]})
            assert response.status_code == 200, response.text
            body = response.json()
            tts = body["tts"]
            assert tts["source"] == "assigned" and tts["spec"] == SPECS[tts["arm"]]
            label = client.post("/v1/feedback", json={"id": body["id"], "gold": store.golds[q]})
            assert label.status_code == 200, label.text
            assert label.json()["arm"] == tts["arm"]
            served.append((user, q, seed, tts["arm"]))
            return tts["arm"]

        first = {f"user-{i}": ask(f"user-{i}", i % nq, i // nq) for i in range(USERS)}
        for i in range(RETURNING):
            user = f"user-{i}"
            assert ask(user, (i + 7) % nq, 100 + i) == first[user], f"{user} changed arm"

        # the split over distinct users: within 4 binomial standard deviations of 1/2
        share = sum(arm == "sc8" for arm in first.values()) / USERS
        assert abs(share - 0.5) <= 4 * math.sqrt(0.25 / USERS), share
        assert set(first.values()) == {"sc8", "cmc"}

        # per-arm accuracy from the gateway's counters == offline replay of exactly those episodes
        stats = {s.arm: s for s in summarize(fetch_samples(url + "/metrics"))}
        assert set(stats) == {"sc8", "cmc"}
        offline_tokens = {}
        for arm, spec in SPECS.items():
            episodes = [(q, seed) for _, q, seed, a in served if a == arm]
            controller = load(spec)
            offline = [run_episode(controller, ReplayEnv(store), q, seed, answer_mode="math")
                       for q, seed in episodes]
            assert stats[arm].requests == stats[arm].ok == stats[arm].labelled == len(episodes)
            assert stats[arm].correct == sum(bool(r.correct) for r in offline), arm
            assert stats[arm].tokens == sum(r.tokens for r in offline), arm  # tokens per request, too
            offline_tokens[arm] = [r.tokens for r in offline]
            assert stats[arm].token_requests == len(offline)
            assert stats[arm].token_variance == pytest.approx(statistics.variance(offline_tokens[arm]), rel=1e-9)
        # the token comparison is Welch's t-test on exactly those per-request costs
        tokens = compare_tokens(list(stats.values()))
        a, b = offline_tokens[tokens.a], offline_tokens[tokens.b]
        qa, qb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        assert tokens.difference == pytest.approx(statistics.mean(a) - statistics.mean(b))
        assert tokens.t == pytest.approx(tokens.difference / math.sqrt(qa + qb))
        assert tokens.df == pytest.approx((qa + qb) ** 2 / (qa**2 / (len(a) - 1) + qb**2 / (len(b) - 1)))
        # cmc at β=0.2 spends a fraction of sc@8's tokens on these questions: the test must call it significant
        assert tokens.significant and tokens.ci95[0] < tokens.difference < tokens.ci95[1]
        # not vacuous: some labels are wrong
        assert sum(s.correct for s in stats.values()) < USERS + RETURNING

        assert main(["ab", "report", "--metrics-url", url + "/metrics"]) == 0
        out = capsys.readouterr().out
        for arm in SPECS:
            row = next(line for line in out.splitlines() if line.startswith(arm + " "))
            assert f"{stats[arm].accuracy:.3f}" in row and f"{stats[arm].requests:.0f}" in row
        assert "significant at 5%:" in out
        assert "(Welch's t-test); significant at 5%: yes" in out
        print(f"\nsplit sc8 {share:.3f}; accuracy " +
              ", ".join(f"{a} {s.accuracy:.3f} ({s.labelled:.0f})" for a, s in stats.items()) + "\n" + out)

"""The official `openai` client against the gateway on a real socket, replay engine: unchanged client code.

Non-streaming and streaming chat, completions, model listing, `extra_body={"tts": ...}` and the error
mapping to the client's exception classes. The answers are checked against the offline replay episode.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
openai = pytest.importorskip("openai", reason="needs the openai client (dev extra)")

from autotts.controllers import load  # noqa: E402
from autotts.offline.env import ReplayEnv  # noqa: E402
from autotts.offline.episode import run_episode  # noqa: E402
from autotts.offline.evaluate import bundled_data_dir  # noqa: E402
from autotts.offline.store import load_store  # noqa: E402
from autotts.server.app import build_app  # noqa: E402
from autotts.server.background import BackgroundServer  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"


@pytest.fixture(scope="module")
def client():
    app = build_app(GatewayConfig.load(overrides={"stores": [str(STORE)]}))
    with BackgroundServer(app) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def store():
    return load_store(STORE)


def test_chat_with_extra_body_tts(client, store) -> None:
    q, seed = 12, 4
    response = client.chat.completions.create(
        model="Qwen3-8B", seed=seed, messages=[{"role": "user", "content": store.questions[q]}],
        extra_body={"tts": {"controller": "cmc", "beta": 0.5}})
    offline = run_episode(load("cmc:beta=0.5"), ReplayEnv(store), q, seed)
    assert response.model_extra["tts"]["answer"] == offline.answer
    assert response.choices[0].message.content == f"The answer is $\\boxed{{{offline.answer}}}$."  # replay: no text
    assert response.usage.completion_tokens == offline.tokens
    assert response.usage.prompt_tokens_details.cached_tokens == 0
    extra = response.model_extra["tts"]
    assert (extra["controller"], extra["beta"], extra["branches"], extra["rounds"]) == \
        ("cmc", 0.5, offline.branches, offline.steps)


def test_streaming_with_usage(client, store) -> None:
    stream = client.chat.completions.create(
        model="tts-parallel-probe", seed=1, messages=[{"role": "user", "content": store.questions[3]}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    offline = run_episode(load("parallel_probe"), ReplayEnv(store), 3, 1)
    assert content == f"The answer is $\\boxed{{{offline.answer}}}$."
    progress = [c.model_extra["tts"]["progress"] for c in chunks if "progress" in (c.model_extra.get("tts") or {})]
    assert len(progress) == offline.steps and progress[0]["branches"] == 64
    assert chunks[-1].usage.completion_tokens == offline.tokens


def test_completions_and_models(client, store) -> None:
    completion = client.completions.create(model="qwen3-8b@esc", prompt=store.questions[0], seed=0)
    offline = run_episode(load("esc"), ReplayEnv(store), 0, 0).answer
    assert completion.model_extra["tts"]["answer"] == offline
    assert completion.choices[0].text == f"The answer is $\\boxed{{{offline}}}$."  # replay stores keep no text
    assert {"Qwen3-8B", "tts-cmc"} <= {m.id for m in client.models.list()}


def test_errors_raise_the_clients_exceptions(client, store) -> None:
    with pytest.raises(openai.BadRequestError, match=r"tts\.beta"):
        client.chat.completions.create(model="Qwen3-8B", messages=[{"role": "user", "content": store.questions[0]}],
                                       extra_body={"tts": {"controller": "cmc", "beta": 2}})
    with pytest.raises(openai.BadRequestError, match="replay engine answers only"):
        client.chat.completions.create(model="Qwen3-8B", messages=[{"role": "user", "content": "2+2?"}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": store.questions[0]}])

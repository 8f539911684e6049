"""Hot reload on a real socket, replay engine: a streaming request in flight keeps its controller.

The artifact ``mine`` v1 waits for a gate file before its first action (only on real questions, so its
start-up check on synthetic episodes passes straight through). A streaming request starts on v1 and
blocks; v2 is saved and ``POST /admin/reload`` swaps it in; a new request is served by v2 at once; the
gate opens and the first request ends with ``tts.version == "1"`` in its final chunk, with the same
answer and tokens as v1's episode replayed offline. Also: the `openai` client with ``api_key`` against a
gateway started with one. Loading, auth and failing reloads in detail: tests/unit/test_lifecycle.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
openai = pytest.importorskip("openai", reason="needs the openai client (dev extra)")

import httpx  # noqa: E402
from autotts.controllers.artifact import save_artifact  # noqa: E402
from autotts.controllers.registry import load  # noqa: E402
from autotts.offline.env import ReplayEnv  # noqa: E402
from autotts.offline.episode import run_episode  # noqa: E402
from autotts.offline.evaluate import bundled_data_dir  # noqa: E402
from autotts.offline.store import load_store  # noqa: E402
from autotts.server.app import build_app  # noqa: E402
from autotts.server.background import BackgroundServer  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
ADMIN = {"Authorization": "Bearer admin-secret"}

SOURCE = '''
import os
import time

from autotts.controllers.actions import Branch
from autotts.controllers.aggregate import majority
from autotts.controllers.base import GeneratorController, Param

GATE = GATE_PATH


class Mine(GeneratorController):
    name = "mine"
    version = "VERSION"
    parameters = {"n": Param(int, 4, low=1, high=64, help="branches")}

    def run(self, obs):
        if WAIT and not obs.question.startswith("synthetic question"):
            deadline = time.monotonic() + 60
            while not os.path.exists(GATE) and time.monotonic() < deadline:
                time.sleep(0.01)
        yield [Branch(self.params["n"], segments=None, probe=False)]
        return majority(obs.completed_answers())
'''


def source(version: str, gate: Path, wait: bool) -> str:
    return SOURCE.replace("GATE_PATH", repr(str(gate))).replace("VERSION", version).replace("WAIT", str(wait))


def events(lines) -> list[dict]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_in_flight_stream_finishes_with_the_controller_it_started_with(tmp_path: Path) -> None:
    store = load_store(STORE)
    q, seed = 5, 2
    directory, gate = tmp_path / "controllers", tmp_path / "gate"
    directory.mkdir()
    save_artifact(directory / "mine", source("1", gate, wait=True))
    gate.touch()  # open while v1 is replayed offline
    offline = run_episode(load(str(directory / "mine"), allow_code=True), ReplayEnv(store), q, seed)
    gate.unlink()

    config = GatewayConfig.load(env={}, overrides={"stores": [str(STORE)], "controllers_dir": str(directory),
                                                   "allow_code": True, "admin_token": "admin-secret"})
    body = {"model": "mine", "seed": seed, "stream": True,
            "messages": [{"role": "user", "content": store.questions[q]}]}
    with BackgroundServer(build_app(config)) as url, httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            lines = stream.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"  # v1 is running, blocked
            save_artifact(directory / "mine", source("2", gate, wait=False))
            reply = client.post("/admin/reload", headers=ADMIN)
            assert reply.status_code == 200, reply.text
            assert reply.json()["changes"]["changed"][0]["to"]["version"] == "2"
            fresh = client.post("/v1/chat/completions", json={**body, "stream": False})
            assert fresh.status_code == 200 and fresh.json()["tts"]["version"] == "2"  # served while v1 waits
            listing = client.get("/v1/controllers").json()
            assert next(e for e in listing["data"] if e["name"] == "mine")["version"] == "2"
            assert client.get("/health").json()["in_flight"] == 1  # v1's episode is still running
            gate.touch()
            rest = events(lines)
        final = next(e for e in rest if e.get("choices") and e["choices"][0].get("finish_reason"))
        tts = final["tts"]
        assert (tts["spec"], tts["version"]) == ("mine", "1")
        assert (tts["answer"], tts["tokens_spent"]) == (offline.answer, offline.tokens)
        assert client.get("/health").json()["in_flight"] == 0


def test_openai_client_with_api_key() -> None:
    config = GatewayConfig.load(env={}, overrides={"stores": [str(STORE)], "api_key": "client-key"})
    with BackgroundServer(build_app(config)) as url:
        good = openai.OpenAI(base_url=url + "/v1", api_key="client-key", max_retries=0)
        assert "tts-cmc" in {m.id for m in good.models.list()}
        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="API key is not valid"):
            bad.models.list()
        assert httpx.get(url + "/health").status_code == 200  # probes need no key

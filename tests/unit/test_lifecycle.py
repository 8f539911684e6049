"""Controller lifecycle on the real app over ASGI (replay engine): directory loading, checks before any code
runs, admin auth, reloads that add or fail, the file watcher, the optional /v1 API key.

A request in flight across a reload, real sockets and the `openai` client are in
tests/integration/test_gateway_reload.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.cli.main import main
from autotts.controllers.artifact import save_artifact, source_hash
from autotts.controllers.errors import AutoTTSError
from autotts.controllers.registry import load
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig

from tests.helpers import run_app

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
QUESTIONS = load_store(STORE).questions
ADMIN = {"Authorization": "Bearer admin-secret"}

# n whole branches, majority vote; `VERSION` and the class name are filled in per test
SOURCE = '''
from autotts.controllers.actions import Branch
from autotts.controllers.aggregate import majority
from autotts.controllers.base import GeneratorController, Param


class NAME(GeneratorController):
    name = "LOWER"
    version = "VERSION"
    description = "n whole branches, majority vote (test controller)"
    parameters = {"n": Param(int, 3, low=1, high=64, help="branches")}
    beta_range = (0.0, 1.0)
    default_beta = 0.5

    def run(self, obs):
        yield [Branch(self.params["n"], segments=None, probe=False)]
        return majority(obs.completed_answers())
'''


def source(name: str = "mine", version: str = "1") -> str:
    return SOURCE.replace("NAME", name.title()).replace("LOWER", name).replace("VERSION", version)


def write_raw_artifact(path: Path, code: str) -> None:
    """An artifact directory whose manifest matches `code` (which save_artifact would refuse to load)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "controller.py").write_text(code)
    (path / "manifest.json").write_text(json.dumps({"format": "autotts-controller/1", "name": "mine",
                                                    "version": "9", "sha256": source_hash(code)}))


def make_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "controllers"
    directory.mkdir()
    save_artifact(directory / "mine", source(), scorecard={"accuracy": 0.5}, provenance={"by": "test"})
    return directory


def config(directory: Path | None, **extra) -> GatewayConfig:
    settings = {"stores": [str(STORE)], "controllers_dir": str(directory) if directory else None,
                "admin_token": "admin-secret", **extra}
    return GatewayConfig.load(env={}, overrides=settings)


def call(cfg: GatewayConfig, requests):
    """Run `requests(client, app)` (async) against a fresh app, lifespan included."""
    app = build_app(cfg)
    return run_app(app, lambda client: requests(client, app))


def chat(model: str, q: int = 0, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": QUESTIONS[q]}], "seed": 3, **extra}


def entry(listing: dict, kind: str, name: str) -> dict:
    return next(e for e in listing["data"] if e["kind"] == kind and e["name"] == name)


def reloads(metrics_text: str, result: str) -> float:
    series = f'autotts_controller_reloads_total{{result="{result}"}}'
    line = next(x for x in metrics_text.splitlines() if x.startswith(series))
    return float(line.split()[-1])


def test_directory_artifacts_are_listed_and_served_like_offline(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)
    save_artifact(directory / "tiny", source("tiny", "7"), single_file=True)
    (directory / "controllers.yaml").write_text("aliases:\n  fast: mine:n=1\n")
    (directory / "README.md").write_text("ignored")

    async def go(c, app):
        listing = (await c.get("/v1/controllers")).json()
        served = (await c.post("/v1/chat/completions", json=chat("fast", q=2))).json()
        models = [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
        return listing, served, models

    listing, served, models = call(config(directory), go)
    mine = entry(listing, "alias", "mine")
    manifest = json.loads((directory / "mine" / "manifest.json").read_text())
    assert mine["source"] == "artifact" and mine["path"] == str(directory / "mine")
    assert mine["sha256"] == manifest["sha256"] == source_hash((directory / "mine" / "controller.py").read_text())
    assert mine["version"] == "1" and mine["beta_range"] == [0.0, 1.0] and mine["parameters"]["n"]["default"] == 3
    assert mine["manifest"]["scorecard"] == {"accuracy": 0.5} and mine["manifest"]["provenance"] == {"by": "test"}
    assert entry(listing, "alias", "tiny")["version"] == "7" and entry(listing, "alias", "tiny")["path"].endswith(
        "tiny.json")
    assert entry(listing, "alias", "fast")["resolved_spec"] == "mine:beta=0.5,n=1"
    assert entry(listing, "alias", "tts-cmc")["source"] == "builtin"
    assert entry(listing, "default", "default")["resolved_spec"] == "cmc:beta=0.5"
    assert {"mine", "tiny", "fast"} <= set(models)
    # the artifact served through the alias behaves exactly like the same controller replayed offline
    offline = run_episode(load(f"{directory / 'mine'}:n=1", allow_code=True), ReplayEnv(load_store(STORE)), 2, 3)
    tts = served["tts"]
    assert (tts["spec"], tts["version"], tts["arm"]) == ("mine:beta=0.5,n=1", "1", "fast")
    assert (tts["answer"], tts["tokens_spent"]) == (offline.answer, offline.tokens)


def test_hash_mismatch_is_refused_before_any_code_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = make_dir(tmp_path)
    code = directory / "mine" / "controller.py"
    marker = tmp_path / "ran"
    code.write_text(code.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    with pytest.raises(AutoTTSError, match=r"controllers/mine: content hash mismatch"):
        build_app(config(directory))
    assert main(["serve", "--controllers-dir", str(directory), "--allow-artifact-code"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "content hash mismatch" in err and str(directory / "mine") in err
    assert not marker.exists()  # the changed source never ran


def test_artifact_code_runs_sandboxed_unless_the_operator_trusts_it(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)

    async def go(c, app):
        listing = (await c.get("/v1/controllers")).json()
        served = (await c.post("/v1/chat/completions", json=chat("mine", q=1))).json()
        return entry(listing, "alias", "mine"), served["tts"]

    sandboxed, tts = call(config(directory), go)
    trusted, tts_trusted = call(config(directory, allow_code=True), go)
    assert (sandboxed["isolation"], trusted["isolation"]) == ("sandbox", "in-process")
    assert {k: v for k, v in sandboxed.items() if k != "isolation"} == \
        {k: v for k, v in trusted.items() if k != "isolation"}
    same = ("spec", "version", "answer", "tokens_spent", "branches", "rounds")
    assert [tts[k] for k in same] == [tts_trusted[k] for k in same]


@pytest.mark.parametrize("name", ["cmc", "none"])
def test_artifact_may_not_shadow_a_builtin(tmp_path: Path, name: str) -> None:
    directory = make_dir(tmp_path)
    save_artifact(directory / name, source())
    with pytest.raises(AutoTTSError, match=f"artifact name '{name}' is a built-in"):
        build_app(config(directory))


def test_admin_auth() -> None:
    async def attempts(c, app):
        return [(r.status_code, r.json()["error"]["code"] if r.status_code != 200 else None)
                for r in [await c.post("/admin/reload"),
                          await c.post("/admin/reload", headers={"Authorization": "Basic admin-secret"}),
                          await c.post("/admin/reload", headers={"Authorization": "Bearer wrong"}),
                          await c.post("/admin/reload", headers=ADMIN)]]

    assert call(config(None), attempts) == [(401, "missing_token"), (401, "missing_token"),
                                            (403, "invalid_token"), (200, None)]
    disabled = call(config(None, admin_token=None), attempts)
    assert disabled == [(403, "admin_disabled")] * 4
    # the Helm chart's env var is the default; the gateway's own setting wins over it
    env = {"AUTOTTS_ADMIN_TOKEN": "from-helm"}
    assert GatewayConfig.load(env=env).admin_token == "from-helm"
    assert GatewayConfig.load(env={**env, "AUTOTTS_SERVE_ADMIN_TOKEN": "own"}).admin_token == "own"
    assert GatewayConfig.load(env=env, overrides={"admin_token": "flag"}).admin_token == "flag"


def test_reload_adds_alias_and_arms(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)

    async def go(c, app):
        before = (await c.get("/v1/controllers")).json()
        save_artifact(directory / "other", source("other", "3"))
        (directory / "controllers.yaml").write_text(
            "arms:\n  - {name: a, controller: other, weight: 1}\n  - {name: b, controller: 'mine:n=2', beta: 0.2}\n")
        reply = await c.post("/admin/reload", headers=ADMIN)
        after = (await c.get("/v1/controllers")).json()
        served = (await c.post("/v1/chat/completions", json=chat("other"))).json()
        armed = (await c.post("/v1/chat/completions", json=chat("Qwen3-8B", tts={"arm": "b"}))).json()
        again = await c.post("/admin/reload", headers=ADMIN)
        return before, reply, after, served, armed, again, (await c.get("/metrics")).text

    before, reply, after, served, armed, again, metrics = call(config(directory), go)
    assert "other" not in {e["name"] for e in before["data"]}
    assert reply.status_code == 200, reply.text
    assert reply.json()["changes"]["added"] == ["alias:other", "arm:a", "arm:b"]
    other = entry(after, "alias", "other")
    assert other["version"] == "3"
    assert other["sha256"] == source_hash((directory / "other" / "controller.py").read_text())
    assert entry(after, "arm", "b")["resolved_spec"] == "mine:beta=0.2,n=2"
    assert after["status"]["last_reload"]["result"] == "ok" and after["status"]["reloads"] == {"ok": 1, "error": 0}
    assert (served["tts"]["spec"], served["tts"]["version"]) == ("other:beta=0.5", "3")
    assert (armed["tts"]["arm"], armed["tts"]["spec"]) == ("b", "mine:beta=0.2,n=2")
    assert again.json()["unchanged"] is True
    assert reloads(metrics, "ok") == 2 and reloads(metrics, "error") == 0


def _hash_mismatch(path: Path) -> None:
    (path / "controller.py").write_text(source(version="2"))  # manifest still describes version 1


def _syntax_error(path: Path) -> None:
    write_raw_artifact(path, source(version="2").replace("def run(self, obs):", "def run(self, obs)"))


def _check_fails(path: Path) -> None:  # loads fine, but its episodes end without an answer
    save_artifact(path, source(version="2").replace("return majority(obs.completed_answers())", "return None"))


def _bad_default(path: Path) -> None:
    (path.parent / "controllers.yaml").write_text("controller: ../elsewhere\n")


@pytest.mark.parametrize("break_it, message", [
    (_hash_mismatch, "content hash mismatch"),
    (_syntax_error, "SyntaxError"),
    (_check_fails, "failed its check"),
    (_bad_default, "unknown controller '../elsewhere'"),
])
def test_broken_reload_keeps_the_old_controllers_serving(tmp_path: Path, break_it, message: str) -> None:
    directory = make_dir(tmp_path)

    async def go(c, app):
        first = (await c.post("/v1/chat/completions", json=chat("mine"))).json()["tts"]
        break_it(directory / "mine")
        reply = await c.post("/admin/reload", headers=ADMIN)
        # a new β is a new controller instance: built from the class loaded before, not from the broken files
        after = await c.post("/v1/chat/completions", json=chat("mine", tts={"beta": 0.9}))
        listing = (await c.get("/v1/controllers")).json()
        save_artifact(directory / "mine", source(version="2"))  # repaired
        (directory / "controllers.yaml").unlink(missing_ok=True)
        fixed = await c.post("/admin/reload", headers=ADMIN)
        latest = (await c.post("/v1/chat/completions", json=chat("mine"))).json()["tts"]
        return first, reply, after, listing, fixed, latest, (await c.get("/metrics")).text

    first, reply, after, listing, fixed, latest, metrics = call(config(directory), go)
    assert first["version"] == "1"
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "reload_failed" and message in error["message"]
    assert after.status_code == 200 and after.json()["tts"]["version"] == "1"
    assert after.json()["tts"]["spec"] == "mine:beta=0.9"
    assert entry(listing, "alias", "mine")["version"] == "1"
    status = listing["status"]
    assert status["last_reload"]["result"] == "error" and message in status["last_reload"]["error"]
    assert status["reloads"] == {"ok": 0, "error": 1}
    assert fixed.status_code == 200 and latest["version"] == "2"
    assert reloads(metrics, "error") == 1 and reloads(metrics, "ok") == 1


def test_config_file_reload_and_restart_only_keys(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"stores: [{STORE}]\ncontroller: cmc:beta=0.2\nadmin_token: admin-secret\n")
    cfg = GatewayConfig.load(path, env={})

    async def go(c, app):
        first = (await c.post("/v1/chat/completions", json=chat("Qwen3-8B"))).json()["tts"]["spec"]
        path.write_text(f"stores: [{STORE}]\ncontroller: sc:n=4\nadmin_token: admin-secret\nport: 9001\n"
                        "aliases: {cheap: 'cmc:beta=0.1'}\n")
        reply = (await c.post("/admin/reload", headers=ADMIN)).json()
        second = (await c.post("/v1/chat/completions", json=chat("Qwen3-8B"))).json()["tts"]["spec"]
        path.write_text("controller: [not, a, spec\n")
        broken = await c.post("/admin/reload", headers=ADMIN)
        third = (await c.post("/v1/chat/completions", json=chat("cheap"))).json()["tts"]["spec"]
        return first, reply, second, broken, third

    first, reply, second, broken, third = call(cfg, go)
    assert (first, second, third) == ("cmc:beta=0.2", "sc:n=4", "cmc:beta=0.1")
    assert reply["restart_required"] == ["port"]
    assert "alias:cheap" in reply["changes"]["added"]
    assert broken.status_code == 422 and "gateway.yaml: cannot parse" in broken.json()["error"]["message"]


def test_file_watch_reloads_and_stops_with_the_app(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)

    async def until(c, predicate, timeout: float = 10.0) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            listing = (await c.get("/v1/controllers")).json()
            if predicate(listing):
                return listing
            await asyncio.sleep(0.02)
        raise AssertionError(f"not seen within {timeout} s: {listing['status']}")

    async def go(c, app):
        gateway = app.state.gateway
        watcher = gateway.controllers._watcher
        assert watcher is not None and not watcher.done()
        save_artifact(directory / "later", source("later", "5"))
        added = await until(c, lambda d: any(e["name"] == "later" for e in d["data"]))
        _hash_mismatch(directory / "later")
        failed = await until(c, lambda d: d["status"]["last_reload"]["result"] == "error")
        served = (await c.post("/v1/chat/completions", json=chat("later"))).json()["tts"]
        return watcher, added, failed, served

    watcher, added, failed, served = call(config(directory, reload_interval_s=0.05), go)
    assert watcher.done()  # stopped with the lifespan: no task left behind
    assert added["status"]["last_reload"]["trigger"] == "watch" and added["status"]["watching"] is True
    assert entry(added, "alias", "later")["version"] == "5"
    assert "content hash mismatch" in failed["status"]["last_reload"]["error"]
    assert entry(failed, "alias", "later")["version"] == "5" and served["version"] == "5"
    assert failed["status"]["reloads"]["error"] == 1  # the same broken files are not retried on every poll


def test_api_key_guards_v1_only() -> None:
    async def go(c, app):
        key = {"Authorization": "Bearer client-key"}
        return {
            "models, no key": (await c.get("/v1/models")).status_code,
            "models, wrong key": (await c.get("/v1/models", headers={"Authorization": "Bearer nope"})).status_code,
            "models, key": (await c.get("/v1/models", headers=key)).status_code,
            "controllers, no key": (await c.get("/v1/controllers")).status_code,
            "chat, no key": (await c.post("/v1/chat/completions", json=chat("tts-sc"))).status_code,
            "chat, key": (await c.post("/v1/chat/completions", json=chat("tts-sc"), headers=key)).status_code,
            "health": (await c.get("/health")).status_code,
            "metrics": (await c.get("/metrics")).status_code,
            "admin, api key only": (await c.post("/admin/reload", headers=key)).status_code,
            "error shape": (await c.get("/v1/models")).json()["error"]["code"],
        }

    assert call(config(None, api_key="client-key"), go) == {
        "models, no key": 401, "models, wrong key": 401, "models, key": 200, "controllers, no key": 401,
        "chat, no key": 401, "chat, key": 200, "health": 200, "metrics": 200, "admin, api key only": 403,
        "error shape": "invalid_api_key"}


def test_config_rejects_bad_lifecycle_settings(tmp_path: Path) -> None:
    with pytest.raises(AutoTTSError, match="controllers_dir must be an existing directory"):
        GatewayConfig.load(env={}, overrides={"controllers_dir": str(tmp_path / "missing")})
    with pytest.raises(AutoTTSError, match="reload_interval_s must be >= 0"):
        GatewayConfig.load(env={}, overrides={"reload_interval_s": -1})
    with pytest.raises(AutoTTSError, match=r"api_key must be a non-empty string without spaces \(the value is not"):
        GatewayConfig.load(env={}, overrides={"api_key": "two words"})


def test_the_load_time_check_can_be_switched_off(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)
    _check_fails(directory / "mine")
    with pytest.raises(AutoTTSError, match=r"controllers/mine: controller 'mine:beta=0\.5' failed its check"):
        build_app(config(directory))
    build_app(config(directory, check_artifacts=False))  # the operator's call (serve-time fallback still applies)


def test_listing_is_strict_json_with_infinite_bounds(tmp_path: Path) -> None:
    directory = make_dir(tmp_path)
    save_artifact(directory / "wide", source("wide").replace("high=64", "high=float('inf')"))

    async def go(c, app):
        return await c.get("/v1/controllers")

    reply = call(config(directory), go)
    assert reply.status_code == 200, reply.text
    assert entry(reply.json(), "alias", "wide")["parameters"]["n"]["high"] == "inf"

"""Small pieces of the gateway: settings, controller selection, answer extraction, error bodies, metrics.

The HTTP behaviour built from them is tested in tests/unit/test_server_api.py.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

pytest.importorskip("prometheus_client", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.controllers.errors import EpisodeTimeout
from autotts.engines.answers import NO_ANSWER, final_answer, probe_answer
from autotts.engines.errors import EngineTimeout
from autotts.server.config import ConfigError, GatewayConfig
from autotts.server.errors import BadRequest, UnknownQuestion, error_body, http_error
from autotts.server.metrics import GatewayMetrics
from autotts.server.selection import ControllerSelector


@pytest.mark.parametrize("name", ["autotts.server.config"])
def test_docstring_examples(name) -> None:
    failures, attempted = doctest.testmod(importlib.import_module(name))
    assert attempted > 0 and failures == 0


def test_config_precedence_file_env_flags(tmp_path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("serve:\n  port: 9001\n  max_branches: 16\n  aliases: {fast: 'cmc:beta=0.1'}\n")
    config = GatewayConfig.load(path, env={"AUTOTTS_SERVE_MAX_BRANCHES": "32", "AUTOTTS_SERVE_TEMPERATURE": "none"},
                                overrides={"port": 9002, "host": None})
    assert (config.port, config.max_branches, config.temperature, config.host) == (9002, 32, None, "127.0.0.1")
    assert config.aliases == {"fast": "cmc:beta=0.1"}
    toml = tmp_path / "gw.toml"
    toml.write_text('engine = "vllm"\nengine_url = "http://e:8000"\nstores = ["a", "b"]\n')
    assert GatewayConfig.load(toml, env={}).stores == ["a", "b"]


@pytest.mark.parametrize("text, env, message", [
    ("max_branches: lots\n", {}, r"gw\.yaml: max_branches must be an int, got 'lots'"),
    ("colour: red\n", {}, r"gw\.yaml: unknown setting 'colour'"),
    ("port: 0\n", {}, r"gw\.yaml: port must be a TCP port"),
    ("", {"AUTOTTS_SERVE_ENGINE": "tgi"}, r"\$AUTOTTS_SERVE_ENGINE: engine must be one of"),
    ("", {"AUTOTTS_SERVE_ALIASES": "{not json"}, r"\$AUTOTTS_SERVE_ALIASES: aliases must be a mapping"),
    ("engine: vllm\n", {}, r"engine 'vllm' needs engine_url"),
    ("port: [1\n", {}, r"gw\.yaml: cannot parse"),
])
def test_config_errors_name_the_key_and_source(tmp_path, text, env, message) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        GatewayConfig.load(path, env=env)


def test_selector_rejects_bad_defaults_and_aliases_at_start() -> None:
    with pytest.raises(BadRequest, match="unknown controller"):
        ControllerSelector("nope", {})
    with pytest.raises(BadRequest, match="beta"):
        ControllerSelector("sc", {"x": "cmc:beta=7"})
    selector = ControllerSelector("cmc", {"cheap": "cmc:beta=0.1"})
    first = selector.select({"controller": "cheap", "beta": 0.3}, None, None)
    assert (first.controller.beta, first.arm, first.source) == (0.3, "cheap", "body")
    assert selector.select({"controller": "cheap", "beta": 0.3}, None, None).controller is first.controller


def test_answers() -> None:
    assert probe_answer("  \\frac{1}{2} } tail") == "\\frac{1}{2}"
    assert probe_answer("") == NO_ANSWER and probe_answer("}") == NO_ANSWER
    assert final_answer("no box here") is None
    assert final_answer("\\boxed{12") is None  # unclosed
    assert final_answer("<think>\\boxed{3}</think> so \\boxed{4}") == "4"


def test_error_body_shape() -> None:
    assert error_body(UnknownQuestion("not stored", param="messages")) == {"error": {
        "message": "not stored", "type": "invalid_request_error", "param": "messages", "code": "unknown_question"}}
    assert error_body(EngineTimeout("slow")) == {"error": {
        "message": "slow", "type": "engine_error", "param": None, "code": "timeout"}}
    assert http_error(EngineTimeout("slow")).status == http_error(EpisodeTimeout("late")).status == 504


def test_metrics_registries_are_per_app() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    labels = {"controller": "sc", "controller_version": "1", "arm": "default", "model": "m"}
    a.episode(labels, prompt=10, decode=20, probe=3, cached=4, decode_calls=2, probe_calls=1, branches=2,
              prunes=0, probes=1, rounds=2)
    a.request(labels, "200", 0.5, 23)
    a.request(labels, "200", 0.5, None)  # tokens unknown (a pass-through without usage): not observed
    text_a, text_b = a.render().decode(), b.render().decode()
    tail = 'arm="default",controller="sc",controller_version="1",model="m"}'
    assert f"autotts_request_completion_tokens_count{{{tail} 1.0" in text_a
    assert f"autotts_request_completion_tokens_squares_total{{{tail} 529.0" in text_a
    assert 'autotts_tokens_total{arm="default",controller="sc",controller_version="1",kind="decode",model="m"} 20.0' \
        in text_a
    assert "kind=\"decode\"" not in text_b

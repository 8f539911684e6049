"""The Anthropic and OpenAI explorers end to end: real SDKs, fake servers on 127.0.0.1, real sandbox.

Each fake is scripted to (1) evaluate a valid controller, (2) evaluate a broken one, (3) submit the
first by the id the loop reported back. The tests check the wire (tool results matched to their
call ids, error flags, auth headers), the history, the artifact, and that the dollars accounted
equal the fake's usage numbers times the configured prices. The local explorer has its own test
in test_discovery_local.py; the loop on real stores is in tests/integration/test_discover_local.py.
"""

from __future__ import annotations

import json
import re

import pytest
from autotts.cli.main import main
from autotts.discovery.config import DiscoverConfig
from autotts.discovery.explorers.base import ExplorerError
from autotts.discovery.loop import run_discovery

from .discovery_data import VALID, beta_controller, tiny_store_file
from .llm_fakes import FakeLLMServer

pytest.importorskip("anthropic", reason="the anthropic SDK is in the 'discovery' and 'dev' extras")
pytest.importorskip("openai", reason="the openai SDK is in the 'discovery' and 'dev' extras")

BROKEN = beta_controller("        raise RuntimeError('broken on purpose')\n        yield []\n")
USAGE = [(1200, 300), (2500, 450), (3100, 80)]
PRICE_IN, PRICE_OUT = 3.0, 15.0


def _tool_results(body: dict, flavour: str) -> list[tuple[str, str, bool]]:
    """(call id, text, is_error) of the tool results in the newest turn of a request."""
    if flavour == "anthropic":
        blocks = body["messages"][-1]["content"]
        return [(b["tool_use_id"], b["content"], b.get("is_error", False)) for b in blocks
                if isinstance(b, dict) and b.get("type") == "tool_result"]
    tail = []
    for m in reversed(body["messages"]):
        if m["role"] != "tool":
            break
        tail.append((m["tool_call_id"], m["content"], None))
    return tail[::-1]


def _script(flavour: str):
    def first(body):
        return [("evaluate_controller", {"code": VALID, "note": "full reads, majority"})]

    def second(body):
        return [("evaluate_controller", {"code": BROKEN, "note": "a broken one"})]

    def third(body):
        # the id comes from what the loop answered to the first call
        first_result = next(m for m in body["messages"] if _has_result(m, flavour))
        text = first_result["content"][0]["content"] if flavour == "anthropic" else first_result["content"]
        return [("submit", {"candidate_id": re.search(r"candidate (c\d+)", text).group(1), "reason": "valid"})]

    return [first, second, third]


def _has_result(message: dict, flavour: str) -> bool:
    if flavour == "anthropic":
        return isinstance(message["content"], list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in message["content"])
    return message["role"] == "tool"


def _run(tmp_path, monkeypatch, flavour: str, **overrides):
    store = tiny_store_file(tmp_path / "data")
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    with FakeLLMServer(_script(flavour), USAGE) as fake:
        base = f"http://127.0.0.1:{fake.port}" + ("/v1" if flavour == "openai" else "")
        settings = dict(explorer=flavour, data=[str(store)], rounds=1, betas=[0.0, 1.0], search_seeds=2, top_k=1,
                        workers=1, base_url=base, api_key_env="FAKE_LLM_KEY", model="fake-model",
                        price_in=PRICE_IN, price_out=PRICE_OUT, max_turns=5)
        report = run_discovery(DiscoverConfig(**{**settings, **overrides}), tmp_path / "run", progress=False)
    return fake, report, store


@pytest.mark.parametrize("flavour", ["anthropic", "openai"])
def test_llm_explorer_end_to_end_against_fake_server(tmp_path, monkeypatch, flavour):
    fake, report, store = _run(tmp_path, monkeypatch, flavour)
    assert len(fake.requests) == 3
    # the wire: tools declared in the flavour's format, auth sent by the SDK, results matched to call ids
    tools = fake.requests[0]["tools"]
    names = [t["name"] for t in tools] if flavour == "anthropic" else [t["function"]["name"] for t in tools]
    assert names == ["evaluate_controller", "inspect_trace", "read_history", "submit"]
    auth = fake.headers[0].get("x-api-key", "") + fake.headers[0].get("authorization", "")
    assert "sk-test-not-a-secret" in auth
    (call_id, ok_text, ok_error), = _tool_results(fake.requests[1], flavour)
    assert call_id == ("toolu_1_0" if flavour == "anthropic" else "call_1_0")
    assert "candidate c0000: status ok" in ok_text and "beta" in ok_text
    (call_id, bad_text, bad_error), = _tool_results(fake.requests[2], flavour)
    assert call_id == ("toolu_2_0" if flavour == "anthropic" else "call_2_0")
    assert "status check_failed" in bad_text and "broken on purpose" in bad_text
    if flavour == "anthropic":
        assert ok_error is False and bad_error is True
    # the history and the round summary
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [(r["id"], r["status"], r["explorer"]) for r in records] == [
        ("c0000", "ok", flavour), ("c0001", "check_failed", flavour)]
    (summary,) = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    assert summary["submitted"] == "c0000" and summary["evaluations"] == ["c0000", "c0001"]
    # accounting equals the fake's usage numbers times the configured prices
    expected_usd = sum(i * PRICE_IN + o * PRICE_OUT for i, o in fake.reported) / 1e6
    usage = [json.loads(line) for line in (run / "usage.jsonl").read_text().splitlines()]
    assert [(u["input_tokens"], u["output_tokens"]) for u in usage] == fake.reported == USAGE
    assert report["llm"]["usd"] == pytest.approx(expected_usd, abs=1e-9)
    assert summary["llm"]["usd"] == pytest.approx(expected_usd, abs=1e-9)
    assert report["llm"]["input_tokens"] == sum(i for i, _ in USAGE)
    # the artifact is the valid candidate and `autotts eval` runs it
    (finalist,) = report["finalists"]
    assert finalist["id"] == "c0000" and finalist["artifact"]
    assert main(["eval", "--data", str(store), "--controller", finalist["artifact"] + ":beta=1", "--seeds", "2",
                 "--workers", "1", "--out", str(tmp_path / "r.csv"), "--no-progress"]) == 0
    # no key is ever written to the run directory
    assert not any("sk-test-not-a-secret" in p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())


def test_budget_stops_the_run_after_the_call_that_spent_it(tmp_path, monkeypatch):
    first_call_usd = (USAGE[0][0] * PRICE_IN + USAGE[0][1] * PRICE_OUT) / 1e6
    fake, report, _ = _run(tmp_path, monkeypatch, "anthropic", rounds=3, budget_usd=first_call_usd / 2)
    assert len(fake.requests) == 1  # the first call spent the budget: no further call, no second round
    assert report["stop_reason"] == "budget spent" and len(report["rounds"]) == 1
    assert report["llm"]["usd"] == pytest.approx(first_call_usd)


def test_missing_key_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    store = tiny_store_file(tmp_path / "data")
    config = DiscoverConfig(explorer="openai", data=[str(store)], rounds=1, betas=[0.0, 1.0], search_seeds=1,
                            api_key_env="NO_SUCH_KEY_VAR", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ExplorerError, match="NO_SUCH_KEY_VAR"):
        run_discovery(config, tmp_path / "run", progress=False)

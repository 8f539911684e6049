"""The gateway as a drop-in for a reasoning endpoint, on scripted engines (`MockEngine`): the winning
branch's own text as `content`, extractors and their probe suffixes, votes over equivalent answers, the
judge's engine call, and requests passed through untouched. Against real vLLM:
tests/integration/test_vllm_dropin.py; the SDK pieces offline: tests/unit/test_votes.py."""

from __future__ import annotations

import itertools
import json

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.engines import Capabilities, MockEngine
from autotts.server.app import build_app
from autotts.server.config import GatewayConfig
from autotts.server.gateway import Gateway

from tests.helpers import run_app

CONFIG = {"engine": "vllm", "engine_url": "http://unused", "segment_tokens": 8, "probe_max_tokens": 6}
THINKING = "<think>\nadd them: 3 + 4\n</think>\n\n"
FINAL = "Adding 3 and 4 gives **7**, so \\boxed{7}."


def post(engine, body: dict, path: str = "/v1/chat/completions", **config):
    cfg = GatewayConfig.load(overrides={**CONFIG, **config})

    async def go(client):
        return await client.post(path, json=body)

    return run_app(build_app(gateway=Gateway(cfg, engine=engine)), go)


def chat(question: str = "3 + 4?", **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], "max_tokens": 200, **extra}


def continuing(text: str, probe: str = "7}"):
    """Every branch writes `text`; probes (the calls of ``probe_max_tokens`` = 6) answer `probe`."""
    def handler(request):
        prompt = request.prompt
        if request.max_tokens == 6:
            return probe
        return text[len(prompt.partition("<|assistant|>")[2]):]
    return handler


def test_content_is_the_winning_branchs_own_text_and_reasoning_its_thinking() -> None:
    body = post(MockEngine(continuing(THINKING + FINAL)), chat(seed=1, tts={"controller": "sc:n=2"})).json()
    message = body["choices"][0]["message"]
    assert message["content"] == "\n\n" + FINAL  # what follows </think>, token for token
    assert message["reasoning_content"] == message["reasoning"] == "\nadd them: 3 + 4\n"
    assert body["tts"]["answer"] == "7" and body["tts"]["response"] == {"mode": "full"}
    completion = post(MockEngine(continuing(THINKING + FINAL)), {"prompt": "3 + 4?", "max_tokens": 200,
                                                                   "tts": {"controller": "sc:n=1"}}, "/v1/completions")
    assert completion.json()["choices"][0]["text"] == THINKING + FINAL  # completions: the raw text, as vLLM


def test_a_winner_answered_from_probes_is_finished_or_answered_in_a_sentence() -> None:
    """parallel_probe answers from probes while branches still decode: `full` decodes the winner to its end."""
    engine = MockEngine(continuing(THINKING + "x" * 60 + FINAL))
    tts = {"controller": "parallel_probe", "params": {"n": 2, "T": 1, "warm_up": 0, "max_steps": 3}}
    full = post(engine, chat(seed=2, tts=tts)).json()
    assert full["tts"]["response"] == {"mode": "full", "finished_winner": True}
    assert full["choices"][0]["message"]["content"].endswith(FINAL)
    short = post(MockEngine(continuing(THINKING + "x" * 60 + FINAL)), chat(seed=2, tts={**tts, "response": "answer"}))
    assert short.json()["choices"][0]["message"]["content"] == "The answer is $\\boxed{7}$."
    assert short.json()["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]  # no finishing call


def test_streaming_sends_the_same_content_as_deltas() -> None:
    engine = MockEngine(continuing(THINKING + "中文 emoji 🎉 " + FINAL))
    cfg = GatewayConfig.load(overrides=CONFIG)

    async def go(client):
        plain = (await client.post("/v1/chat/completions", json=chat(seed=4, tts={"controller": "sc:n=1"}))).json()
        raw = (await client.post("/v1/chat/completions", json=chat(seed=4, stream=True,
                                                                    tts={"controller": "sc:n=1"}))).text
        return plain, raw

    plain, raw = run_app(build_app(gateway=Gateway(cfg, engine=engine)), go)
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    assert "".join(d.get("content") or "" for d in deltas) == plain["choices"][0]["message"]["content"]
    assert "🎉" in plain["choices"][0]["message"]["content"]


def test_a_probe_cut_inside_a_character_answers_whole_characters() -> None:
    """A probe of 6 byte-tokens ends inside 本 (``a日本}`` is 8 bytes): its answer is ``a日``, never ``a日\ufffd``,
    in the answer, the votes and the progress chunks alike."""
    engine = MockEngine(continuing(THINKING + "x" * 60 + "\\boxed{a日}", probe="a日本}"))
    tts = {"controller": "parallel_probe", "params": {"n": 2, "T": 1, "warm_up": 0, "max_steps": 3}}
    body = post(engine, chat(seed=2, tts=tts)).json()
    raw = post(MockEngine(continuing(THINKING + "x" * 60 + "\\boxed{a日}", probe="a日本}")),
               chat(seed=2, stream=True, tts=tts)).text
    assert body["tts"]["answer"] == "a日" and body["tts"]["votes"] == {"a日": 2}
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    assert any("progress" in c.get("tts", {}) for c in chunks)
    assert "\ufffd" not in json.dumps([body, *chunks], ensure_ascii=False)


@pytest.mark.parametrize(("extractor", "probe", "final", "suffix_end"), [
    ("number", "12 apples", "So we have 12.", "is "),
    ("choice", "C)", "The answer is (C).", "("),
    ({"kind": "json", "field": "answer"}, '"Paris"}', '{"answer": "Paris"}', ": "),
    ({"kind": "regex", "pattern": r"ANSWER: (\w+)", "suffix": "\nANSWER: "}, "ANSWER: blue", "ANSWER: blue", ": "),
])
def test_extractors_read_answers_and_probes_use_their_suffix(extractor, probe, final, suffix_end) -> None:
    engine = MockEngine(continuing(THINKING + "y" * 30 + final, probe))
    tts = {"controller": "parallel_probe", "params": {"n": 2, "T": 30, "max_steps": 30}, "extractor": extractor}
    body = post(engine, chat(seed=5, tts=tts)).json()
    probes = [c for c in engine.calls if c.max_tokens == 6]
    assert probes and all(c.prompt.endswith(suffix_end) for c in probes)
    want = {"number": "12", "choice": "C", "json": "Paris", "regex": "blue"}
    kind = extractor if isinstance(extractor, str) else extractor["kind"]
    assert body["tts"]["answer"] == want[kind] and body["tts"]["extractor"]["kind"] == kind


def test_math_votes_live_join_equivalent_answers() -> None:
    """Boxed answers vote by math equivalence unless a request, arm, controller or config says otherwise."""
    finals = ["\\boxed{3}", "\\boxed{1/2}", "\\boxed{3}", "\\boxed{0.5}", "\\boxed{\\frac{1}{2}}"]

    def tts(config=None, **extra):
        replies = itertools.cycle(finals)
        return post(MockEngine(lambda request: next(replies)), chat(seed=0, tts={"controller": "sc:n=5", **extra}),
                    **(config or {}))

    exact, math = tts(aggregator="exact").json()["tts"], tts().json()["tts"]
    assert exact["answer"] == "3" and exact["votes"] == {"3": 2, "1/2": 1, "0.5": 1, "\\frac{1}{2}": 1}
    assert math["answer"] == "1/2" and math["votes"] == {"1/2": 3, "3": 2} and math["aggregator"] == "math"
    assert math["vote"]["clusters"][0]["variants"] == ["1/2", "0.5", "\\frac{1}{2}"]
    assert tts(config={"aggregator": "exact"}).json()["tts"]["answer"] == "3"
    assert tts(extractor="number").json()["tts"]["aggregator"] == "math"
    assert tts(extractor="choice").json()["tts"]["aggregator"] == "normalized"


def test_the_judge_is_one_more_call_to_the_same_engine() -> None:
    answers = iter(["\\boxed{dog}", "\\boxed{cat}", "\\boxed{cat}"])
    judged = []

    def handler(request):
        if "most consistent response" in request.prompt:
            judged.append(request.prompt)
            return "Response 1"
        return next(answers)
    body = post(MockEngine(handler), chat(seed=0, tts={"controller": "sc:n=3", "aggregator": "judge"})).json()
    assert len(judged) == 1 and "Response 0: cat" in judged[0] and "Response 1: dog" in judged[0]
    assert body["tts"]["answer"] == "dog" and body["tts"]["vote"]["judge_pick"] == 1
    assert body["tts"]["engine_calls"] == 4  # three branches and the judge, all counted in usage


class Forwarding(MockEngine):
    capabilities = Capabilities(passthrough=True)

    async def passthrough(self, path, body):
        self.forwarded = body
        return {"id": "x", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1}}


@pytest.mark.parametrize(("extra", "reason"), [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_calls"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                   {"role": "user", "content": "3 + 4?"}]}, "multi_turn"),
])
def test_requests_tts_cannot_improve_pass_through_with_the_reason(extra, reason) -> None:
    engine = Forwarding(continuing(FINAL))
    body = post(engine, {**chat(), **extra}).json()
    assert body["tts"] == {"controller": "none", "passthrough": reason} and not engine.calls
    assert {k: engine.forwarded[k] for k in extra} == extra  # untouched


def test_multi_turn_that_asks_for_tts_keeps_every_turn_in_the_prompt() -> None:
    engine = Forwarding(continuing(FINAL))
    turns = [{"role": "user", "content": "first question"}, {"role": "assistant", "content": "first reply"},
             {"role": "user", "content": "3 + 4?"}]
    body = post(engine, {**chat(), "messages": turns, "tts": {"controller": "sc:n=1"}}).json()
    assert body["tts"]["answer"] == "7"
    assert engine.calls[0].prompt.startswith("<|user|>first question<|assistant|>first reply<|user|>3 + 4?")


def test_bad_vote_settings_are_400s_naming_the_field() -> None:
    for tts, param in (({"aggregator": "vote"}, "tts.aggregator"), ({"extractor": "boxd"}, "tts.extractor"),
                       ({"response": "long"}, "tts.response")):
        response = post(MockEngine(continuing(FINAL)), chat(tts=tts))
        assert response.status_code == 400 and response.json()["error"]["param"].startswith(param), response.text


def test_captured_stores_record_the_extractor_that_read_their_answers(tmp_path) -> None:
    """Live traffic captured per extractor: a number-read episode never lands in the boxed store."""
    from autotts.offline.store import load_store

    cfg = GatewayConfig.load(overrides={**CONFIG, "capture_dir": str(tmp_path), "capture_rate": 1})
    engine = MockEngine(continuing(THINKING + "So we have 12 apples, \\boxed{12}."))

    async def go(client):
        for extractor in ("boxed", "number"):
            body = chat(seed=3, tts={"controller": "sc:n=2", "extractor": extractor})
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200

    run_app(build_app(gateway=Gateway(cfg, engine=engine)), go)
    leaves = sorted(p.name for p in (tmp_path / "mock").iterdir())
    assert leaves[0] == "seg8" and leaves[1].startswith("seg8-number-") and len(leaves) == 2
    boxed, number = (load_store(tmp_path / "mock" / name) for name in leaves)
    assert boxed.meta["extractor"]["kind"] == "boxed" and boxed.meta["extractor"]["suffix"].endswith("\\boxed{")
    assert number.meta["extractor"] == {"kind": "number", "suffix": "\n</think>\n\nThe final answer is "}
    assert number.question(0).finals == ["12", "12"]

"""`autotts collect` on the deterministic FakeEngine: store rows, replay-vs-live parity, usage, resume, files.

The strongest check is parity: a controller replayed on the collected store (opened in trace order)
must see the same answers, return the same answer and spend the same decode tokens as the same
controller run live on the same engine with the same seeds. The real-vLLM test is
tests/integration/test_collect_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from autotts.cli.main import main
from autotts.controllers import load
from autotts.engines.backends import TokenBranchBackend
from autotts.engines.base import Sampling
from autotts.engines.errors import EngineDown
from autotts.engines.fake import FakeEngine
from autotts.engines.streams import StreamBranchBackend
from autotts.offline.collect import CollectError, CollectSettings, collect, parts_dir
from autotts.offline.env import ReplayEnv
from autotts.offline.episode import run_episode as replay_episode
from autotts.offline.questions import QuestionItem, QuestionsError, read_questions
from autotts.offline.store import load_store
from autotts.server.executor import run_episode as live_episode

from tests.helpers import store_in_opening_order

LENGTHS = [3, 5, 7, 10, 23, 40, 12, 16]  # EOS after this many generated tokens, per trace (cap 23 below)


class VaryingEOS(FakeEngine):
    """FakeEngine whose trace b emits EOS after LENGTHS[b] tokens (probes never stop early)."""

    def __init__(self) -> None:
        super().__init__()
        self.chats: list[str] = []

    async def tokenize_chat(self, messages, **kwargs):
        self.chats.append(messages[-1]["content"])
        ids = await super().tokenize_chat(messages, **kwargs)
        self.prompt_base = len(ids)  # questions run one after the other
        return ids

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        self.eos_at = None if "-probe" in request_id else LENGTHS[int(re.search(r"-b(\d+)-", request_id)[1])]
        return await super().generate(prompt_ids, max_tokens, sampling, request_id)

    async def stream(self, prompt_ids, max_tokens, sampling, request_id, chunk_tokens=1):
        self.eos_at = LENGTHS[int(re.search(r"-b(\d+)-", request_id)[1])]
        eos_at = self.eos_at
        async for chunk in super().stream(prompt_ids, max_tokens, sampling, request_id, chunk_tokens):
            yield chunk
            self.eos_at = eos_at  # a probe sent meanwhile reset it


class FailsOn(VaryingEOS):
    """Raises EngineDown on the `nth` generate call of the question whose text is `question`."""

    def __init__(self, question: str, nth: int) -> None:
        super().__init__()
        self.question, self.nth, self.seen = question, nth, 0

    async def generate(self, prompt_ids, max_tokens, sampling, request_id):
        if self.chats[-1] == self.question:
            self.seen += 1
            if self.seen == self.nth:
                raise EngineDown("engine at http://x unreachable (test)")
        return await super().generate(prompt_ids, max_tokens, sampling, request_id)


QUESTIONS = [QuestionItem("What is 1+1?", "2"), QuestionItem("And 2+2?", None), QuestionItem("3*3?", "9")]


def settings(**kw) -> CollectSettings:
    base = {"model": "fake", "dataset": "toy", "n": len(LENGTHS), "segment_tokens": 5, "max_tokens": 23,
            "probe_max_tokens": 3, "seed": 4}
    return CollectSettings(**{**base, **kw})


def run(engine, out, questions=QUESTIONS, resume=False, **kw):
    return asyncio.run(collect(engine, questions, settings(**kw), out=out, resume=resume, concurrency=3,
                               progress=False, meta={"engine": "fake"}))


def rows(store):
    return [(store.questions[i], store.golds[i], store.question(i)) for i in range(store.n_questions)]


def test_rows_follow_the_replay_semantics_and_usage_is_the_engines(tmp_path):
    engine = VaryingEOS()
    result = run(engine, tmp_path / "s.parquet")
    store = load_store(tmp_path / "s.parquet")
    assert not parts_dir(tmp_path / "s.parquet").exists()
    assert (store.model, store.dataset, store.segment_tokens, store.n_questions) == ("fake", "toy", 5, 3)
    assert store.golds == ["2", None, "9"]
    for i in range(3):
        q = store.question(i)
        lengths = [min(n, 23) for n in LENGTHS]
        assert q.tokens == lengths
        assert [len(p) for p in q.probes] == [math.ceil(n / 5) - 1 for n in lengths]  # none after the last segment
        assert all(isinstance(f, str) and f for f in q.finals)
    meta = store.meta
    assert meta["probe_suffix"] == "\n</think>\n\n\\boxed{" and meta["probe_max_tokens"] == 3
    assert meta["extractor"] == {"kind": "boxed", "suffix": meta["probe_suffix"]}
    assert meta["aggregator"] == "math"  # what the live gateway votes boxed answers with; eval follows it
    assert meta["sampling"] == {"temperature": 0.6, "top_p": 0.95, "seed": 4, "ignore_eos": False}
    assert meta["engine"] == "fake" and meta["n"] == 8 and meta["max_tokens"] == 23 and meta["created"]
    usage = meta["usage"]
    decode = [c for c in engine.calls if "-decode" in c["id"]]
    probes = [c for c in engine.calls if "-probe" in c["id"]]
    assert usage["decode_calls"] == len(decode) and usage["probe_calls"] == len(probes)
    assert usage["prompt_tokens"] == sum(len(c["prompt"]) for c in engine.calls)
    assert usage["decode_tokens"] == int(store.branch_tokens.sum())
    assert usage["probe_tokens"] == 3 * len(probes)  # the fake engine never stops a probe early
    assert usage == result.usage and [u["wall_s"] >= 0 for u in meta["question_usage"]] == [True] * 3


def test_the_store_records_the_extractor_and_its_suffix_and_replay_honours_it(tmp_path):
    engine = VaryingEOS()
    store = run(engine, tmp_path / "n.parquet", extractor="number").store
    suffix = "\n</think>\n\nThe final answer is "
    assert store.meta["extractor"] == {"kind": "number", "suffix": suffix} and store.meta["probe_suffix"] == suffix
    probes = [c["prompt"] for c in engine.calls if "-probe" in c["id"]]
    tail = asyncio.run(engine.tokenize_text(suffix))
    assert probes and all(p[-len(tail):] == tail for p in probes)  # the probes forced a number
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from autotts.server.app import build_app
    from autotts.server.config import GatewayConfig

    from tests.helpers import run_app

    async def go(client):
        body = {"model": "fake", "messages": [{"role": "user", "content": QUESTIONS[0].question}],
                "tts": {"controller": "sc:n=2"}}
        same = await client.post("/v1/chat/completions", json=body)
        other = await client.post("/v1/chat/completions",
                                  json={**body, "tts": {"controller": "sc", "extractor": "boxed"}})
        return same.json(), other

    same, other = run_app(build_app(GatewayConfig.load(overrides={"stores": [str(tmp_path / "n.parquet")]})), go)
    assert same["tts"]["extractor"]["kind"] == "number" and same["choices"][0]["message"]["content"].startswith(
        "The final answer is ")
    assert other.status_code == 400 and "recorded its answers with the number extractor" in other.text


# sc reads each branch in one engine call (one sampling seed), so live it samples other traces than the
# segment-wise collection: same lengths and cost, not the same text. Controllers that decode segment by
# segment make the collection's calls with the collection's seeds, so they must match exactly.
# ``branch_mode: stream`` (one streamed call per branch) gives each segment its segments-mode call index, so
# its probes are the collection's probes: the same parity holds.
@pytest.mark.parametrize("mode", ["segments", "stream"])
@pytest.mark.parametrize("spec", ["parallel_probe:n=6,warm_up=1,patience=1", "cmc:beta=0.5", "cmc:beta=0",
                                  "sc:n=8"])
def test_replaying_the_store_equals_running_the_controller_live(tmp_path, spec, mode):
    engine = VaryingEOS()
    cfg = settings()
    store = run(engine, tmp_path / "s.parquet").store
    suffix = asyncio.run(engine.tokenize_text(cfg.answers.probe_suffix))
    for i, item in enumerate(QUESTIONS):
        q = store.question(i)
        one = store_in_opening_order(list(zip(q.probes, q.tokens, q.finals, strict=True)), seed=0,
                                     gold=item.gold or "", segment_tokens=5)
        offline = replay_episode(load(spec), ReplayEnv(one), 0, 0)

        async def live(item=item, i=i):
            prompt = await engine.tokenize_chat([{"role": "user", "content": item.question}])
            cls = StreamBranchBackend if mode == "stream" else TokenBranchBackend
            backend = cls(engine, prompt, segment_tokens=5, probe_suffix_ids=suffix,
                                         probe_max_tokens=3, max_branch_tokens=23,
                                         sampling=Sampling(0.6, 0.95), seed=cfg.question_seed(i),
                                         request_id=f"live{i}", max_branches=len(LENGTHS))
            return await live_episode(load(spec), backend, question_id=i, question=item.question)

        outcome = asyncio.run(live())
        assert offline.error is None
        if not spec.startswith("sc"):
            assert offline.answer == outcome.answer
        # what the controller consumed; the stream's tokens past its last segment are usage, as overshoot
        assert offline.tokens == outcome.ledger.decode_tokens - outcome.ledger.overshoot_tokens
        assert outcome.ledger.overshoot_tokens == 0 or mode == "stream"
        assert offline.branches == len(outcome.obs.branches)


def test_a_crash_keeps_finished_questions_and_resume_finishes_the_same_store(tmp_path):
    straight = run(VaryingEOS(), tmp_path / "straight.parquet").store
    out = tmp_path / "s.parquet"
    with pytest.raises(CollectError, match=r"question 1 \('And 2\+2\?'\).*EngineDown.*1 finished.*--resume"):
        run(FailsOn("And 2+2?", nth=9), out)
    assert not out.exists() and sorted(p.name for p in parts_dir(out).iterdir()) == ["q000000.json", "settings.json"]
    with pytest.raises(CollectError, match="pass --resume"):
        run(VaryingEOS(), out)
    with pytest.raises(CollectError, match="segment_tokens 5 -> 6"):
        run(VaryingEOS(), out, resume=True, segment_tokens=6)
    engine = VaryingEOS()
    result = run(engine, out, resume=True)
    assert (result.collected, result.resumed) == (2, 1)
    assert engine.chats == ["And 2+2?", "3*3?"]  # question 0 was not decoded again
    assert rows(result.store) == rows(straight) and result.usage == straight.meta["usage"]
    assert rows(load_store(out)) == rows(straight)
    # the store is complete: --resume has nothing to do, a fresh run refuses to overwrite it
    again = VaryingEOS()
    assert run(again, out, resume=True).collected == 0 and again.calls == []
    with pytest.raises(CollectError, match="exists"):
        run(VaryingEOS(), out)
    with pytest.raises(CollectError, match="other settings"):
        run(VaryingEOS(), out, resume=True, n=4)


def test_resume_refuses_a_different_question_file(tmp_path):
    out = tmp_path / "s.parquet"
    with pytest.raises(CollectError):
        run(FailsOn("And 2+2?", nth=1), out)
    other = [QuestionItem("Something else?", None), *QUESTIONS[1:]]
    with pytest.raises(CollectError, match=r"q000000\.json holds question 0 'What is 1\+1\?'"):
        run(VaryingEOS(), out, questions=other, resume=True)


# --- question files -----------------------------------------------------------------------------
def test_question_files_in_native_and_benchmark_shapes(tmp_path):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"question": "native?", "gold_answer": "a"},
        {"question": "no gold?"},
        {"question": "gsm8k?", "answer": "Half is 6.\n#### 1,234"},
        {"problem": "math500?", "answer": "\\frac{1}{2}"},
        {"problem": "math?", "solution": "We get $\\boxed{\\sqrt{2}}$ and done."},
        {"Problem": "aime24?", "Answer": 204, "Solution": "... \\boxed{204}"},
        {"question": "aime25?", "answer": "70"},
        {"question": "float?", "answer": 3.0}]) + "\n\n")
    items = read_questions(jsonl)
    assert [(i.question, i.gold) for i in items] == [
        ("native?", "a"), ("no gold?", None), ("gsm8k?", "1234"), ("math500?", "\\frac{1}{2}"),
        ("math?", "\\sqrt{2}"), ("aime24?", "204"), ("aime25?", "70"), ("float?", "3")]
    assert read_questions(jsonl, limit=2) == items[:2]
    as_json = tmp_path / "q.json"
    as_json.write_text(json.dumps({"data": [{"problem": "p?", "answer": 7}]}))
    assert read_questions(as_json) == [QuestionItem("p?", "7")]
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.table({"Problem": ["a?", "b?"], "Answer": [1, 2]}), parquet)
    assert read_questions(parquet) == [QuestionItem("a?", "1"), QuestionItem("b?", "2")]


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "ok"}\n{"text": "x"}\n', r"q.jsonl:2: no question field .*fields: text"),
    ('{"question": "ok"}\n{broken\n', r"q.jsonl:2: not valid JSON"),
    ('{"question": ""}\n', r"q.jsonl:1: field 'question' must be a non-empty string"),
    ('{"question": "q", "answer": true}\n', r"q.jsonl:1: field 'answer' must be a string or number"),
    ('\n', r"q.jsonl: holds no questions"),
])
def test_question_file_errors_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "q.jsonl"
    path.write_text(content)
    with pytest.raises(QuestionsError, match=message):
        read_questions(path)


def test_cli_errors_are_one_line(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "q"}\n')
    out = str(tmp_path / "s.parquet")
    assert main(["collect", "--engine", "vllm", "--questions", str(questions), "--out", out]) == 2
    assert "needs engine_url" in capsys.readouterr().err
    assert main(["collect", "--engine", "vllm", "--engine-url", "http://127.0.0.1:9", "--questions",
                 str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert main(["collect", "--engine", "vllm", "--engine-url", "http://127.0.0.1:9", "--questions", str(questions),
                 "--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "EngineDown" in err and "127.0.0.1:9" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.parquet.parts").exists()  # nothing to resume from a run that never started
    with pytest.raises(SystemExit) as exit_:
        main(["collect", "--help"])
    assert exit_.value.code == 0 and "--resume" in capsys.readouterr().out


def test_question_importer_docstring_examples():
    import doctest

    import autotts.offline.questions as module

    failures, attempted = doctest.testmod(module)
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("spec", ["sc:n=8", "cmc:beta=0.5"])
def test_forced_final_probes_are_counted_apart_from_the_controllers_probes(spec):
    # the fake's text never holds \boxed{}, so every branch that ends is read by one forced probe: engine
    # probe calls, charged live, yet no Probe action of the controller (tts.probes); the ledger tells them apart
    engine, cfg = VaryingEOS(), settings()
    suffix = asyncio.run(engine.tokenize_text(cfg.answers.probe_suffix))

    async def live():
        prompt = await engine.tokenize_chat([{"role": "user", "content": QUESTIONS[0].question}])
        backend = TokenBranchBackend(engine, prompt, segment_tokens=5, probe_suffix_ids=suffix, probe_max_tokens=3,
                                     max_branch_tokens=23, sampling=Sampling(0.6, 0.95), seed=1, request_id="f",
                                     max_branches=len(LENGTHS))
        return await live_episode(load(spec), backend, question_id=0, question=QUESTIONS[0].question)

    outcome = asyncio.run(live())
    ledger = outcome.ledger
    ended = sum(b.finished for b in outcome.obs.branches)
    assert ledger.forced_probes == ended > 0
    assert ledger.probe_calls == outcome.probes + ledger.forced_probes
    if spec.startswith("sc"):
        assert outcome.probes == 0 and ledger.probe_tokens > 0 and ended == len(LENGTHS)

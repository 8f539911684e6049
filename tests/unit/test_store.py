"""Replay stores: the public JSON importer's validation, and the Parquet round trip."""

from __future__ import annotations

import gzip
import json

import pytest
from autotts.controllers import load
from autotts.offline import ReplayEnv, StoreError, load_store, run_episode
from autotts.offline.store import ReplayStore


def question(gold="5", branches=None):
    return {"question": "What is 2+3?", "gold_answer": gold, "probe_freq": 500,
            "each_branch": branches or [[["4", "5"], 1100, "5"], [["5"], 400, "5"], [["ERR", "6", "6"], 1600, "6"]]}


def write(path, data, *, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data).encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def test_model_and_dataset_come_from_the_path(tmp_path):
    store = load_store(write(tmp_path / "MyModel" / "mybench.json.gz", [question()], gz=True))
    assert (store.model, store.dataset, store.segment_tokens, store.n_questions) == ("MyModel", "mybench", 500, 1)
    q = store.question(0)
    assert q.probes == [["4", "5"], ["5"], ["ERR", "6", "6"]] and q.tokens == [1100, 400, 1600]
    assert load_store(tmp_path / "MyModel" / "mybench.json.gz", model="m2").model == "m2"


@pytest.mark.parametrize("mangle, message", [
    (lambda p: p.write_bytes(gzip.compress(b'[{"question": "x", "gold')[:30]), "corrupt or truncated gzip"),
    (lambda p: p.write_bytes(gzip.compress(b'[{"question": "x", "gold')), "not valid JSON"),
    (lambda p: p.write_bytes(gzip.compress(b"hello")), "not valid JSON"),
])
def test_unreadable_files_name_the_file(tmp_path, mangle, message):
    path = tmp_path / "m" / "d.json.gz"
    path.parent.mkdir()
    mangle(path)
    with pytest.raises(StoreError, match=f"{path}.*{message}"):
        load_store(path)


@pytest.mark.parametrize("data, message", [
    ([question(branches=[[["1"], -5, "1"]])],
     r"question 0: each_branch\[0\]: branch_tokens must be a non-negative int, got -5"),
    ([question(), {k: v for k, v in question().items() if k != "gold_answer"}],
     "question 1: missing field 'gold_answer'"),
    ([question(branches=[[["1"], 10]])], "expected \\[probe_answers, branch_tokens, final_answer\\]"),
    ([question(branches=[[[1, 2], 10, "1"]])], "probe_answers must be a list of strings"),
    ({"not": "a list"}, "expected a non-empty JSON list"),
    ([{**question(), "probe_freq": 0}], "'probe_freq' must be a positive int"),
])
def test_invalid_content_names_question_and_field(tmp_path, data, message):
    path = write(tmp_path / "m" / "d.json", data)
    with pytest.raises(StoreError, match=message):
        load_store(path)


def test_numeric_gold_is_read_as_its_string(tmp_path):
    assert load_store(write(tmp_path / "m" / "d.json", [question(gold=5)])).golds == ["5"]


def test_parquet_round_trip_replays_identically(tmp_path):
    src = load_store(write(tmp_path / "m" / "d.json", [question(), question(gold="6")]))
    path = src.write_parquet(tmp_path / "out" / "m" / "d.parquet")
    back = load_store(path)
    assert (back.model, back.dataset, back.segment_tokens, back.golds) == ("m", "d", 500, ["5", "6"])
    assert back.meta["source"] == "d.json"
    for qi in range(2):
        assert back.question(qi) == src.question(qi)
        for spec in ("sc:n=3", "parallel_probe:n=3"):
            a = run_episode(load(spec), ReplayEnv(src), qi, 1)
            b = run_episode(load(spec), ReplayEnv(back), qi, 1)
            assert (a.answer, a.tokens) == (b.answer, b.tokens)


def test_corrupt_parquet_and_negative_tokens_are_reported(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(StoreError, match="not a readable Parquet store"):
        load_store(bad)
    store = ReplayStore.from_records("m", "d", 500, [{"question": "q", "gold_answer": "1",
                                                       "branches": [(["1"], 10, "1")]}])
    store.branch_tokens[0] = -1
    path = store.write_parquet(tmp_path / "neg.parquet")
    with pytest.raises(StoreError, match="question 0: branch_tokens must be >= 0"):
        load_store(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(StoreError, match="no such file"):
        load_store(tmp_path / "absent.json")


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from autotts.controllers.atomic import write_text_atomic

    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "new.txt").chmod(0o640)
        write_text_atomic(tmp_path / "new.txt", "y")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)

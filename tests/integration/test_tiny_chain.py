"""`autotts tiny-model --task chain`: deterministic for a seed, cached by the hash of its settings, loud about
a directory trained otherwise. A few optimizer steps only (seconds); whether the fully trained model reasons
is measured by benchmarks/tiny_model.py (docs/tiny_model.md)."""

from __future__ import annotations

import hashlib
import json

import pytest

pytest.importorskip("torch", reason="training needs torch (pip install 'autotts[vllm]')")
pytest.importorskip("transformers", reason="training needs transformers (pip install 'autotts[vllm]')")

from autotts.cli.main import main
from autotts.server.tiny_train import TrainSettings, train_chain_model

pytestmark = pytest.mark.timeout(600)
SHORT = TrainSettings(steps=3, batch=4, candidates=1)


def digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_settings_same_weights_and_the_cache_answers_at_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    a, manifest_a = train_chain_model(tmp_path / "a", SHORT, use_cache=False)
    b, manifest_b = train_chain_model(tmp_path / "b", SHORT, use_cache=False)
    assert not manifest_a["cached"] and not manifest_b["cached"] and manifest_a["key"] == SHORT.key()
    assert digest(a) == digest(b)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    again, manifest = train_chain_model(tmp_path / "a", SHORT)
    assert manifest["cached"] and digest(again) == digest(a)
    _, first = train_chain_model(tmp_path / "c", SHORT)  # trains, keeps a copy under the cache by its key
    copy, second = train_chain_model(tmp_path / "d", SHORT)
    assert not first["cached"] and second["cached"] and digest(copy) == digest(a)
    assert (tmp_path / "cache" / "tiny-models" / SHORT.key() / "model.safetensors").is_file()
    other, _ = train_chain_model(tmp_path / "e", TrainSettings(steps=3, batch=4, seed=1, candidates=1),
                                 use_cache=False)
    assert digest(other) != digest(a)
    config = json.loads((a / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["vocab_size"] >= 256


def test_parallel_runs_keep_the_lowest_loss_with_that_seeds_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    steps: list[int] = []
    both, manifest = train_chain_model(tmp_path / "both", TrainSettings(steps=4, batch=4, candidates=2),
                                       use_cache=False, progress=lambda step, loss: steps.append(step))
    runs = manifest["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and steps == [0, 1, 2, 3]
    kept = min(runs, key=lambda r: r["final_loss"])
    assert manifest["kept_seed"] == kept["seed"] and manifest["final_loss"] == kept["final_loss"]
    assert sorted(p.name for p in both.iterdir() if p.name.startswith(".")) == []  # the other run is gone
    alone, _ = train_chain_model(tmp_path / "alone", TrainSettings(steps=4, batch=4, seed=kept["seed"], candidates=1),
                                 use_cache=False)
    assert digest(both) == digest(alone)  # the kept run is exactly that seed trained on its own


def test_cli_refuses_a_directory_trained_otherwise_and_non_model_directories(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUTOTTS_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["tiny-model", "--task", "chain", "--steps", "2", str(tmp_path / "m")]) == 0
    assert "trained in" in capsys.readouterr().out
    assert main(["tiny-model", "--task", "chain", "--steps", "2", str(tmp_path / "m")]) == 0
    assert "cached (same settings)" in capsys.readouterr().out
    assert main(["tiny-model", "--task", "chain", "--steps", "3", str(tmp_path / "m")]) != 0
    assert "trained with other settings" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("keep me")
    assert main(["tiny-model", "--task", "chain", "--steps", "2", str(tmp_path / "junk")]) != 0
    assert "not a tiny-model directory" in capsys.readouterr().err
    assert main(["tiny-model", "--task", "chain", "--steps", "2", "--slip", "1.5", str(tmp_path / "n")]) != 0
    assert "slip" in capsys.readouterr().err

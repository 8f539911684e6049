"""Build a tiny, random-weight Qwen3 model that real vLLM can load, with no downloads.

No pretrained weights can be fetched where autotts is developed and tested, yet the vLLM engine path
(token-ID prompts, prefix caching, streaming, aborts, metrics) must run against a real engine. This
module builds a stand-in in about a second: a 2-layer `Qwen3ForCausalLM` with random weights and a
byte-level BPE tokenizer trained on text generated here, saved with `save_pretrained` (safetensors)
plus a ChatML chat template that understands Qwen3's `<think>`/`</think>` and `enable_thinking`.

Ship the builder, not the weights. The output depends only on `vocab_size` and `seed`. Random weights
rarely emit EOS: drive it with `max_tokens`, `ignore_eos` and fixed seeds. torch, transformers and
tokenizers are imported inside the function, so importing this module costs nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "SPECIAL_TOKENS", "THINK_TOKENS", "build_tiny_model"]

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")  # added, not special: they survive skip_special_tokens

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

_WORD_TEXT = (
    "the a an of to and in is it that for on with as was be by this are or from at not but have "
    "answer question think step first then next so therefore because total number sum product "
    "each more less than equal find compute value result check again wait let us we need give "
    "final box solve problem apple book train car river city price cost hour minute day week "
    "year red blue green small large fast slow left right up down true false yes no maybe model "
    "token branch probe segment budget prune continue vote majority confidence engine cache "
    "prefix request server client stream python function return class import list dict string"
)
_WORDS = tuple(_WORD_TEXT.split())


def _corpus(rng: random.Random, lines: int = 6000) -> Iterator[str]:
    """Deterministic chat-, math- and code-flavoured text; plenty for a few thousand merges."""
    for i in range(lines):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        op, val = rng.choice((("+", a + b), ("-", a - b), ("*", a * b)))
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
        kind = i % 4
        if kind == 0:
            yield f"Question: what is {a} {op} {b}? Let us think step by step. {words}."
        elif kind == 1:
            yield f"<think>\n{words.capitalize()}. {a} {op} {b} = {val}.\n</think>\n\n\\boxed{{{val}}}"
        elif kind == 2:
            yield f"def f_{a}(x: int) -> int:\n    return x {op} {b}  # {words}\n"
        else:
            yield f'{words.title()}, {a}; {b}! ({val}) "{words.upper()}" [{i}]\t{words}\n'


def build_tiny_model(out_dir: str | Path, *, vocab_size: int = 2048, seed: int = 0) -> Path:
    """Write a tiny Qwen3 model + tokenizer to `out_dir` and return its path.

    The same `vocab_size` and `seed` give the same files. The tokenizer has exactly
    `vocab_size` tokens (special and think tokens included), matching the embedding size;
    the built-in corpus supports about 325 to 6,800 (outside that it raises).

    >>> path = build_tiny_model(tmp_path)  # doctest: +SKIP
    >>> sorted(p.name for p in path.iterdir())  # doctest: +SKIP
    ['chat_template.jinja', 'config.json', 'generation_config.json', 'model.safetensors', ...]
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    added = SPECIAL_TOKENS + THINK_TOKENS
    if vocab_size < 256 + len(added) + 64:
        raise ValueError(f"vocab_size={vocab_size} too small: need >= {256 + len(added) + 64}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(added),  # ids 0..4, in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(random.Random(0)), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    if tok.get_vocab_size() != vocab_size:
        raise RuntimeError(f"tokenizer reached {tok.get_vocab_size()} tokens, wanted {vocab_size}")

    ids = {t: tok.token_to_id(t) for t in added}
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.save_pretrained(out)

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.save_pretrained(out, safe_serialization=True)
    return out

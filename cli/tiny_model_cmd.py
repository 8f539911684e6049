"""`autotts tiny-model DIR`: build the tiny random-weight Qwen3 model real vLLM can serve (no downloads)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiny-model", help="build a tiny local model for demos and tests with real vLLM",
        description="Write a 2-layer Qwen3 model with random weights and a small byte-level BPE tokenizer "
                    "(ChatML template, <think> tokens) to DIR. Needs torch, transformers and tokenizers "
                    "(installed with autotts[vllm]). Outputs are meaningless text: the model exists to "
                    "exercise the engine path (token IDs, prefix cache, probes, aborts).",
        epilog="example:\n  autotts tiny-model /tmp/tiny && autotts serve --engine vllm-inproc --model /tmp/tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="output directory (created)")
    p.add_argument("--vocab-size", type=int, default=2048, help="tokenizer and embedding size (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.controllers.errors import AutoTTSError

    try:
        from autotts.server.tiny_model import build_tiny_model
        start = time.perf_counter()
        path = build_tiny_model(args.dir, vocab_size=args.vocab_size, seed=args.seed)
    except ImportError as exc:
        raise AutoTTSError(f"tiny-model needs torch, transformers and tokenizers "
                           f"(pip install 'autotts[vllm]'): {exc}") from None
    except ValueError as exc:
        raise AutoTTSError(f"tiny-model: {exc}") from None
    print(f"wrote {path} in {time.perf_counter() - start:.1f}s")
    return 0

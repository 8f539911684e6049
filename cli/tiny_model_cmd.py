"""`autotts tiny-model [--task chain] DIR`: a tiny Qwen3 model real vLLM can serve (no downloads).

Without --task the weights are random (the engine path only); `--task chain` trains one on CPU that
solves autotts.server.tiny_task's chain problems well enough for accuracy to mean something live."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiny-model", help="build a tiny local model for demos and tests with real vLLM",
        description="Write a 2-layer Qwen3 model with random weights and a small byte-level BPE tokenizer "
                    "(ChatML template, <think> tokens) to DIR. Needs torch, transformers and tokenizers "
                    "(installed with autotts[vllm]). Outputs are meaningless text: the model exists to "
                    "exercise the engine path (token IDs, prefix cache, probes, aborts).",
        epilog="examples:\n  autotts tiny-model /tmp/tiny && autotts serve --engine vllm-inproc --model /tmp/tiny\n"
               "  autotts tiny-model --task chain /tmp/chain   # trained, cached by settings hash (docs/tiny_model.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="output directory (created)")
    p.add_argument("--vocab-size", type=int, default=2048, help="tokenizer and embedding size (default 2048)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--task", choices=("chain",), help="train on this synthetic task instead of random weights "
                                                      "(chain: rounds of x*m+k mod 10, see docs/tiny_model.md)")
    p.add_argument("--steps", type=int, help="--task: optimizer steps (default: the trainer's)")
    p.add_argument("--candidates", type=int, help="--task: runs trained in parallel, one per core, with seeds "
                   "SEED, SEED+1, ...; the lowest final loss is kept (default: the trainer's, 2)")
    p.add_argument("--slip", type=float, help="--task: the teacher's slip rate per written result "
                                                  "(default: the trainer's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.controllers.errors import AutoTTSError

    try:
        start = time.perf_counter()
        if args.task:
            return _train(args, start)
        from autotts.server.tiny_model import build_tiny_model
        path = build_tiny_model(args.dir, vocab_size=args.vocab_size, seed=args.seed)
    except ImportError as exc:
        raise AutoTTSError(f"tiny-model needs torch, transformers and tokenizers "
                           f"(pip install 'autotts[vllm]'): {exc}") from None
    except ValueError as exc:
        raise AutoTTSError(f"tiny-model: {exc}") from None
    print(f"wrote {path} in {time.perf_counter() - start:.1f}s")
    return 0


#: a run whose final loss stays above this has not learned the task (measured runs: ~0.04 learned, >= 0.12 not)
UNLEARNED_LOSS = 0.1


def _train(args: argparse.Namespace, start: float) -> int:
    from dataclasses import replace

    from autotts.server.tiny_train import TrainSettings, train_chain_model

    settings = TrainSettings(task=args.task, seed=args.seed)
    extra = {k: v for k, v in (("steps", args.steps), ("slip", args.slip), ("candidates", args.candidates))
             if v is not None}
    settings = replace(settings, **extra)
    every = max(1, settings.steps // 10)

    def progress(step: int, loss: float) -> None:
        if step % every == 0 or step == settings.steps - 1:
            print(f"step {step + 1}/{settings.steps} loss {loss:.3f} ({time.perf_counter() - start:.0f}s)", flush=True)

    path, manifest = train_chain_model(args.dir, settings, progress=progress)
    how = "cached (same settings)" if manifest["cached"] else f"trained in {manifest['train_s']:.0f}s"
    if "runs" in manifest:
        how += "; kept seed {} of runs {}".format(manifest["kept_seed"], ", ".join(
            f"seed {r['seed']} loss {r['final_loss']}" for r in manifest["runs"]))
    print(f"wrote {path}: task {args.task}, key {manifest['key']}, {how}, final loss {manifest['final_loss']}")
    if manifest["final_loss"] > UNLEARNED_LOSS:
        print(f"warning: final loss {manifest['final_loss']} > {UNLEARNED_LOSS}: this model has probably not learned "
              f"the arithmetic and answers near chance (docs/tiny_model.md, Training); try another --seed",
              file=sys.stderr)
    return 0

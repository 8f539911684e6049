"""`autotts collect`: record a replay store from a live engine (N probed traces per question)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def _unescape(text: str) -> str:
    r"""`\n`, `\t` and `\\` as typed on a command line; any other backslash stays as it is (`\boxed`)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect", help="collect a replay store from a live engine (vLLM, SGLang)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="For every question decode N independent traces in segments of --segment-tokens tokens, "
                    "probing each trace after every segment (a copy of the trace plus --probe-suffix, the "
                    "answer it forces recorded), until EOS or --max-tokens. Token IDs end to end, so segments "
                    "and probes are prefix-cache hits. The result is a replay store (Parquet) that autotts "
                    "eval / discover / serve read like the bundled ones. Each finished question is saved at "
                    "once under OUT.parts/: an interrupted run continues with --resume. See docs/collect.md.",
        epilog="examples:\n"
               "  autotts collect --engine vllm --engine-url http://127.0.0.1:8000 --model Qwen/Qwen3-8B \\\n"
               "      --questions aime25.jsonl --n 128 --segment-tokens 500 --max-tokens 40000 \\\n"
               "      --out stores/Qwen3-8B/aime25.parquet\n"
               "  autotts collect ... --out stores/Qwen3-8B/aime25.parquet --resume   # after a crash\n"
               "  autotts collect --engine vllm-inproc --model /tmp/tiny --questions q.jsonl --n 8 \\\n"
               "      --segment-tokens 32 --max-tokens 128 --ignore-eos --out /tmp/tiny.parquet\n"
               "  autotts eval --data stores/Qwen3-8B/aime25.parquet --controller sc:n=64 --out r.csv\n"
               "question files: .jsonl / .json / .parquet rows with 'question' and optional 'gold_answer'; "
               "MATH/AIME\n(problem|Problem, answer|Answer|solution) and GSM8K (answer with '#### 42') rows are "
               "read as they are.")
    p.add_argument("--engine", required=True, choices=("vllm", "sglang", "vllm-inproc"), help="the engine")
    p.add_argument("--engine-url", metavar="URL", help="vllm / sglang: the engine's HTTP server")
    p.add_argument("--model", metavar="NAME",
                   help="vllm / sglang: the engine's model name (default: its first); vllm-inproc: model dir or id")
    p.add_argument("--questions", required=True, metavar="FILE", help="question file (.jsonl, .json, .parquet)")
    p.add_argument("--limit", type=int, metavar="K", help="only the first K questions")
    p.add_argument("--n", type=int, default=128, help="traces per question (default 128)")
    p.add_argument("--segment-tokens", type=int, default=500, metavar="Δ", help="tokens per segment (default 500)")
    p.add_argument("--max-tokens", type=int, default=40_000, help="token cap of a trace (default 40000)")
    p.add_argument("--extractor", default="boxed", metavar="SPEC",
                   help="how answers are read: boxed (default), number, choice, or a JSON mapping such as "
                        "'{\"kind\": \"regex\", \"pattern\": \"ANSWER: (\\\\w+)\"}' (recorded in the store)")
    p.add_argument("--aggregator", default=None, metavar="SPEC",
                   help="how the store's answers vote when eval, discover and the replay engine are not told "
                        "otherwise (recorded in the store; default: the extractor's, as the live gateway votes: "
                        "math for boxed and number, normalized for the others)")
    p.add_argument("--probe-suffix", default=None, metavar="TEXT",
                   help="answer-forcing text appended to a copy of the trace for a probe; \\n and \\t are "
                        "interpreted (default: the extractor's, e.g. '\\n</think>\\n\\n\\boxed{' for boxed)")
    p.add_argument("--probe-max-tokens", type=int, default=8, help="tokens a probe may generate (default 8)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed base: every engine call gets a distinct seed derived from (seed, question, trace, "
                        "call) (default 0)")
    p.add_argument("--ignore-eos", action="store_true", help="decode every trace to --max-tokens (test models)")
    p.add_argument("--prompt-template", default="{question}", metavar="TEXT",
                   help="user message around the question, e.g. '{question}\\nPut the final answer in "
                        "\\\\boxed{{}}.' (default '{question}')")
    p.add_argument("--chat-template-kwargs", type=json.loads, default={}, metavar="JSON",
                   help='extra chat-template arguments, e.g. \'{"enable_thinking": true}\'')
    p.add_argument("--concurrency", type=int, default=64, help="traces of a question decoded at once (default 64)")
    p.add_argument("--engine-timeout", type=float, default=600.0, metavar="S",
                   help="seconds one engine call may take (default 600)")
    p.add_argument("--model-name", metavar="NAME", help="model name written in the store (default: --model, or "
                                                        "the engine's; a directory's last part)")
    p.add_argument("--dataset", metavar="NAME", help="dataset name written in the store (default: file stem)")
    p.add_argument("--out", required=True, metavar="STORE", help="the replay store to write (.parquet)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted collection of OUT")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per engine call otherwise
    asyncio.run(_run(args))
    return 0


def _engine(args: argparse.Namespace):
    from autotts.engines.factory import make_engine
    from autotts.server.config import GatewayConfig

    cfg = GatewayConfig(engine=args.engine, engine_url=args.engine_url, model=args.model,
                        engine_timeout_s=args.engine_timeout)
    return make_engine(cfg)


async def _run(args: argparse.Namespace) -> None:
    from autotts.offline.collect import CollectError, CollectSettings, collect
    from autotts.offline.questions import read_questions

    if not str(args.out).endswith(".parquet"):
        raise CollectError(f"--out must be a .parquet file, got {args.out}")
    if args.limit is not None and args.limit < 1:
        raise CollectError(f"--limit must be >= 1, got {args.limit}")
    if args.aggregator:
        from autotts.controllers.aggregators import parse_aggregator

        try:
            args.aggregator = parse_aggregator(args.aggregator, "--aggregator").spec
        except ValueError as exc:
            raise CollectError(str(exc)) from None
    questions = read_questions(args.questions, limit=args.limit)
    engine = _engine(args)
    try:
        try:
            await engine.start()
        except Exception as exc:
            raise CollectError(f"engine {args.engine} ({args.engine_url or args.model}) did not start: "
                               f"{type(exc).__name__}: {exc}") from exc
        model = args.model_name or Path(str(args.model or engine.model).rstrip("/")).name or engine.model
        settings = CollectSettings(
            model=model, dataset=args.dataset or Path(args.questions).name.split(".")[0], n=args.n,
            segment_tokens=args.segment_tokens, max_tokens=args.max_tokens,
            probe_suffix=None if args.probe_suffix is None else _unescape(args.probe_suffix),
            probe_max_tokens=args.probe_max_tokens, extractor=args.extractor,
            temperature=args.temperature, top_p=args.top_p, seed=args.seed, ignore_eos=args.ignore_eos,
            prompt_template=_unescape(args.prompt_template), chat_template_kwargs=args.chat_template_kwargs)
        meta = {"engine": args.engine, "engine_url": args.engine_url, "tokenizer": str(args.model or engine.model),
                "engine_model": engine.model, "questions_file": Path(args.questions).name,
                **({"aggregator": args.aggregator} if args.aggregator else {})}
        result = await collect(engine, questions, settings, out=args.out, resume=args.resume,
                               concurrency=args.concurrency, progress=not args.no_progress, meta=meta)
    finally:
        await engine.close()
    u, store = result.usage, result.store
    rate = f"{result.run_tokens / result.wall_s:,.0f} tok/s" if result.collected else "nothing to do"
    hit = result.probe_hit_rate
    print(f"{store.n_questions} questions x {settings.n} traces ({result.collected} collected, {result.resumed} "
          f"resumed) in {result.wall_s:.1f}s: {u['decode_tokens']:,} decode + {u['probe_tokens']:,} probe tokens "
          f"({u['decode_calls']:,} + {u['probe_calls']:,} calls), {rate}; probe prefix-cache hit rate "
          f"{'n/a' if hit is None else f'{hit:.3f}'}")
    print(f"store: {result.out}", file=sys.stderr)

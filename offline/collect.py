"""Collecting a replay store from a live engine: N traces per question, decoded in Δ-token segments, probed.

Every trace is one branch of the serving path's own `TokenBranchBackend` (token IDs end to end, so every
segment and probe is a prefix-cache hit on the engine): decode Δ tokens, probe a *copy* of the branch plus
the answer-forcing suffix, repeat until EOS or ``max_tokens``. A row of the store is what the replay
environment needs to replay that trace with the live costs (../shared/replay/README.md):

* ``probe_answers``: one per segment *before the last* — the answer the probe forced after Δ·(k+1) tokens.
  The last segment reveals the final answer instead (no probe is spent on it), exactly as a live episode
  sees it; so a branch of L tokens has ``ceil(L/Δ) − 1`` probes and replaying it fully costs L.
* ``branch_tokens``: the completion tokens the engine reported for the trace's decode calls.
* ``final_answer``: what the extractor (``extractor``: boxed by default, `autotts.controllers.extractors`)
  reads from the trace, else the answer of one forced probe at its end.

Persistence: each finished question is one JSON part file under ``<out>.parts/`` (atomic write), so a
crash loses at most the question in progress; ``resume=True`` skips finished questions after checking the
settings match. The Parquet store (``ReplayStore.from_records`` + ``write_parquet``) is written at the end,
with model, tokenizer, Δ, the extractor and its probe suffix, sampling and the engine-reported usage in its
metadata; the replay engine and the evaluator read the store's answers as that extractor produced them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autotts.controllers.atomic import write_text_atomic
from autotts.controllers.extractors import THINK_CLOSE, Extractor, parse_extractor
from autotts.engines.backends import Ledger, TokenBranchBackend
from autotts.engines.base import Sampling, TokenEngine

from .errors import CollectError
from .questions import QuestionItem
from .store import ReplayStore, StoreError, load_store

__all__ = ["CollectError", "CollectResult", "CollectSettings", "UsageLedger", "collect", "parts_dir"]

USAGE_KEYS = ("prompt_tokens", "cached_tokens", "decode_tokens", "probe_tokens", "decode_calls", "probe_calls",
              "probe_prompt_tokens", "probe_cached_tokens")


@dataclass(frozen=True)
class CollectSettings:
    """Everything that decides what a trace is; a resumed collection must use the same."""

    model: str
    dataset: str
    n: int = 128
    segment_tokens: int = 500
    max_tokens: int = 40_000
    probe_suffix: str | None = None  # None: the extractor's own answer-forcing suffix
    probe_max_tokens: int = 8
    extractor: Any = "boxed"  # a name or a mapping (`parse_extractor`)
    temperature: float | None = 0.6
    top_p: float | None = 0.95
    seed: int = 0
    ignore_eos: bool = False
    prompt_template: str = "{question}"
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("n", "segment_tokens", "max_tokens", "probe_max_tokens"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CollectError(f"collect: {key} must be an int >= 1, got {value!r}")
        try:
            parse_extractor(self.extractor, "collect: extractor")
        except ValueError as exc:
            raise CollectError(str(exc)) from None
        if "{question}" not in self.prompt_template:
            raise CollectError(f"collect: prompt_template must contain {{question}}, got {self.prompt_template!r}")

    @property
    def answers(self) -> Extractor:
        """The extractor, with the suffix its probes use."""
        extractor = parse_extractor(self.extractor)
        return replace(extractor, suffix=self.probe_suffix) if self.probe_suffix is not None else extractor

    def prompt(self, question: str) -> str:
        return self.prompt_template.replace("{question}", question)

    def question_seed(self, index: int) -> int:
        """Seed of question `index`; call c of trace b samples with `branch_seed(question_seed, b, c)`."""
        return (self.seed * 100_003 + index) % (2**31 - 1)


@dataclass(slots=True)
class UsageLedger(Ledger):
    """The backend's ledger plus the probe calls' own prompt and cached tokens (their prefix-cache hit rate)."""

    probe_prompt_tokens: int = 0
    probe_cached_tokens: int = 0

    def add(self, kind: str, prompt: int, completion: int, cached: int) -> None:
        Ledger.add(self, kind, prompt, completion, cached)
        if kind == "probe":
            self.probe_prompt_tokens += prompt
            self.probe_cached_tokens += cached

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in USAGE_KEYS}


@dataclass
class CollectResult:
    store: ReplayStore
    out: Path
    collected: int  # questions decoded by this call
    resumed: int  # questions taken from part files of an earlier run
    wall_s: float
    usage: dict[str, int]  # engine-reported totals over every question of the store
    run_tokens: int = 0  # completion tokens (decode + probe) generated by this call

    @property
    def probe_hit_rate(self) -> float | None:
        prompt = self.usage.get("probe_prompt_tokens", 0)
        return self.usage.get("probe_cached_tokens", 0) / prompt if prompt else None


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


async def collect_question(engine: TokenEngine, item: QuestionItem, index: int, settings: CollectSettings,
                           suffix_ids: list[int], *, concurrency: int,
                           on_call: Callable[[UsageLedger], None] | None = None,
                           think_close_ids: list[int] | None = None) -> dict[str, Any]:
    """All N traces of one question (at most `concurrency` at once) → its part record.

    `on_call(ledger)` runs after every engine call (progress reporting).
    """
    start = time.perf_counter()
    prompt = await engine.tokenize_chat([{"role": "user", "content": settings.prompt(item.question)}],
                                        **settings.chat_template_kwargs)
    backend = TokenBranchBackend(
        engine, prompt, segment_tokens=settings.segment_tokens, probe_suffix_ids=suffix_ids,
        probe_max_tokens=settings.probe_max_tokens, max_branch_tokens=settings.max_tokens,
        sampling=Sampling(settings.temperature, settings.top_p, None, settings.ignore_eos),
        seed=settings.question_seed(index), request_id=f"collect-q{index}", extractor=settings.answers,
        think_close_ids=think_close_ids)
    ledger = backend.ledger = UsageLedger()
    if on_call is not None:
        backend.on_call = lambda: on_call(ledger)
    gate = asyncio.Semaphore(concurrency)

    async def trace(b: int) -> tuple[list[str], int, str]:
        async with gate:
            backend.open(b)
            units = await backend.decode(b, None, True)
        if not units or not units[-1].final:
            raise CollectError(f"trace {b} ended without a final answer")
        probes = [u.answer for u in units[:-1] if u.answer is not None]
        return probes, len(backend.tokens[b]), units[-1].answer

    tasks = [asyncio.ensure_future(trace(b)) for b in range(settings.n)]
    try:
        traces = await asyncio.gather(*tasks)
    except BaseException:  # the first failure (or a cancellation) stops the question's other traces
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return {"index": index, "question": item.question, "gold_answer": item.gold,
            "branches": [list(t) for t in traces], "prompt_length": len(prompt),
            "usage": backend.ledger.as_dict(), "wall_s": round(time.perf_counter() - start, 3)}


def _check_resume(parts: Path, settings: CollectSettings, questions: list[QuestionItem]) -> dict[int, dict]:
    saved_path = parts / "settings.json"
    try:
        saved = json.loads(saved_path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CollectError(f"{saved_path}: unreadable ({exc}); delete {parts} to start over") from None
    now = asdict(settings)
    diff = [f"{k} {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]]
    if diff:
        raise CollectError(f"--resume: settings differ from the interrupted run in {parts}: {'; '.join(diff)} "
                           "(rerun with the original settings, or choose another --out)")
    done: dict[int, dict] = {}
    for path in sorted(parts.glob("q*.json")):
        try:
            part = json.loads(path.read_text())
            index = int(part["index"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CollectError(f"{path}: unreadable part file ({exc}); delete it to recollect that question") \
                from None
        if index >= len(questions) or questions[index].question != part["question"]:
            raise CollectError(f"--resume: {path.name} holds question {index} {_short(part['question'])!r}, "
                               "which is not that question of the question file (same file and --limit?)")
        done[index] = part
    return done


def _complete_store(out: Path, settings: CollectSettings, questions: list[QuestionItem]) -> ReplayStore:
    """--resume on a store that was finished: check it is this collection, then there is nothing to do."""
    try:
        store = load_store(out)
    except StoreError as exc:
        raise CollectError(f"--resume: {exc}") from None
    saved = store.meta.get("settings") or {}
    now = asdict(settings)
    diff = [k for k in now if k not in ("model", "dataset") and saved.get(k) != now[k]]
    if diff or store.questions != [q.question for q in questions]:
        raise CollectError(f"{out}: exists and was collected with other settings or questions "
                           f"({', '.join(diff) or 'questions'}); choose another --out")
    return store


def build_store(settings: CollectSettings, parts: list[dict[str, Any]], meta: dict[str, Any]) -> ReplayStore:
    """The replay store of finished question parts (in question order)."""
    records = [{"question": p["question"], "gold_answer": p["gold_answer"],
                "branches": [(list(b[0]), int(b[1]), str(b[2])) for b in p["branches"]]} for p in parts]
    usage = {k: sum(int(p["usage"].get(k, 0)) for p in parts) for k in USAGE_KEYS}
    meta = {"source": "autotts collect", "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "n": settings.n, "max_tokens": settings.max_tokens, "probe_suffix": settings.answers.probe_suffix,
            "extractor": settings.answers.spec(), "aggregator": settings.answers.default_aggregator,
            "probe_max_tokens": settings.probe_max_tokens,
            "sampling": {"temperature": settings.temperature, "top_p": settings.top_p, "seed": settings.seed,
                         "ignore_eos": settings.ignore_eos},
            "prompt_template": settings.prompt_template, **meta, "settings": asdict(settings), "usage": usage,
            "question_usage": [{**p["usage"], "prompt_length": p["prompt_length"], "wall_s": p["wall_s"]}
                               for p in parts]}
    return ReplayStore.from_records(settings.model, settings.dataset, settings.segment_tokens, records, meta=meta)


async def collect(engine: TokenEngine, questions: list[QuestionItem], settings: CollectSettings, *,
                  out: str | Path, resume: bool = False, concurrency: int = 64, progress: bool = True,
                  meta: dict[str, Any] | None = None) -> CollectResult:
    """Collect `settings.n` traces for every question into the Parquet store `out`.

    `meta` adds store metadata (engine kind, URL, tokenizer, question file). The engine must be started.
    """
    out, parts = Path(out), parts_dir(out)
    start = time.perf_counter()
    if concurrency < 1:
        raise CollectError(f"collect: concurrency must be >= 1, got {concurrency}")
    if out.exists() and not parts.exists():
        if not resume:
            raise CollectError(f"{out}: exists; choose another --out (or --resume to check it is complete)")
        store = _complete_store(out, settings, questions)
        return CollectResult(store, out, 0, store.n_questions, 0.0, dict(store.meta.get("usage") or {}), 0)
    if parts.exists() and not resume:
        raise CollectError(f"{parts}: holds an interrupted collection; pass --resume to continue it "
                           "(or delete the folder to start over)")
    try:
        suffix = settings.answers.probe_suffix
        suffix_ids = await engine.tokenize_text(suffix) if suffix else []
        close_ids = await engine.tokenize_text(THINK_CLOSE) if suffix and THINK_CLOSE in suffix else []
    except Exception as exc:
        raise CollectError(f"engine: cannot tokenize the probe suffix: {type(exc).__name__}: {exc}") from exc
    if parts.exists():
        done = _check_resume(parts, settings, questions)
    else:
        parts.mkdir(parents=True)
        write_text_atomic(parts / "settings.json", json.dumps({"settings": asdict(settings)}, indent=1))
        done = {}
    resumed = len(done)
    bar = _bar(len(questions), resumed, progress)
    spent = [0, time.perf_counter(), 0.0]  # completion tokens of finished questions, start, last refresh
    try:
        for index, item in enumerate(questions):
            if index in done:
                continue

            def on_call(ledger: UsageLedger, index: int = index) -> None:
                now = time.perf_counter()
                if bar is not None and now - spent[2] > 0.5:
                    spent[2] = now
                    bar.set_postfix_str(f"q{index} {_rate(spent, now, live=ledger.completion_tokens)}")

            try:
                part = await collect_question(engine, item, index, settings, suffix_ids, concurrency=concurrency,
                                              on_call=on_call, think_close_ids=close_ids)
            except Exception as exc:
                raise CollectError(
                    f"question {index} ({_short(item.question)!r}): {type(exc).__name__}: {exc}; "
                    f"{len(done)} finished question(s) kept in {parts}; rerun with --resume"
                ) from exc
            write_text_atomic(parts / f"q{index:06d}.json", json.dumps(part))
            done[index] = part
            spent[0] += part["usage"]["decode_tokens"] + part["usage"]["probe_tokens"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(_rate(spent, time.perf_counter()))
    finally:
        if bar is not None:
            bar.close()
    ordered = [done[i] for i in range(len(questions))]
    store = build_store(settings, ordered, meta or {})
    store.write_parquet(out)
    store.path = str(out)
    shutil.rmtree(parts)
    return CollectResult(store, out, len(questions) - resumed, resumed, time.perf_counter() - start,
                         dict(store.meta["usage"]), spent[0])


def _rate(spent: list, now: float, live: int = 0) -> str:
    elapsed = max(now - spent[1], 1e-9)
    return f"{(spent[0] + live) / elapsed:,.0f} tok/s"


def _bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="collect", unit="q", dynamic_ncols=True)

"""The trained tiny model (`autotts tiny-model --task chain`): does it reason, does voting help, do probes improve?

    python benchmarks/tiny_model.py                      # trains (or reuses) the model, then samples on vLLM
    python benchmarks/tiny_model.py --questions 60       # a quicker, noisier run

1. trains the model into --workdir/model (cached by the hash of its settings; the training wall time,
   CPU seconds and the load average during training are recorded);
2. on vLLM's offline engine (CPU build, batched over all questions): --n samples of each of --questions
   fresh hard-split questions at temperature 1, then a probe after every segment but the last, as
   `autotts collect` records them: the sample's token IDs cut after k·Δ tokens + the IDs of its extractor's
   answer-forcing suffix (collect's defaults: the boxed extractor, probe_max_tokens), sampled like the
   trace, the reply decoded and read by the extractor's `probe`;
3. single-sample accuracy (every sample's boxed answer against the exact checker), self-consistency@n
   (majority of a question's n answers), probe accuracy by depth k, tokens per sample, and how often the
   first pass's stated answer (``so A``) and the checked answer are right.

Targets (issue 16): single-sample accuracy in [0.30, 0.80], sc@n at least 0.10 above it, probe accuracy
rising with depth. They are reported as met or not; nothing is tuned to the numbers here.
Writes benchmarks/results/tiny_model.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import re
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    p, z = k / n, 1.96
    denom = 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / denom, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [round(mid - half, 4), round(mid + half, 4)]


def never_falls(cells: list[tuple[float, int]]) -> bool:
    """Each depth's accuracy at least the one before (the strict reading of "rising with depth")."""
    return len(cells) >= 2 and all(b[0] >= a[0] for a, b in itertools.pairwise(cells))


def rises_within_noise(cells: list[tuple[float, int]]) -> bool:
    """The last depth's accuracy is significantly above the first's, and no depth falls significantly
    (more than 2 standard errors of the difference) below an earlier one. `never_falls` also fails on a
    flat stretch whose values differ by sampling noise alone; this one does not."""
    def drop(a: tuple[float, int], b: tuple[float, int]) -> float:  # (a - b) in standard errors
        se = math.sqrt(a[0] * (1 - a[0]) / a[1] + b[0] * (1 - b[0]) / b[1]) or 1e-9
        return (a[0] - b[0]) / se

    return (len(cells) >= 2 and drop(cells[-1], cells[0]) > 2
            and all(drop(a, b) <= 2 for i, a in enumerate(cells) for b in cells[i + 1:]))


def latest_answer_curve(finals: list[tuple[str, str | None, int]], probe_right: dict[tuple[int, int], bool],
                        check) -> dict[str, dict]:
    """Accuracy of the answer a controller holds for each trace after k segments, over all traces: the
    probe's while the trace runs, its final answer once it has ended (as replay and the gateway give it).
    The population is the same at every depth, unlike `probe_accuracy_by_depth`'s, which at depth k
    holds only the traces still running, ever fewer and harder ones."""
    depths = max(segments for _, _, segments in finals)
    final_right = [check(question, answer) for question, answer, _ in finals]
    curve = {}
    for k in range(1, depths):
        right = sum(probe_right[t, k] if k < segments else final_right[t]
                    for t, (_, _, segments) in enumerate(finals))
        curve[str(k)] = {"accuracy": round(right / len(finals), 4), "traces": len(finals),
                         "running": sum(k < segments for _, _, segments in finals)}
    return curve


def qwen3_reference(depths: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60)) -> dict[str, dict]:
    """The same two curves on the recorded Qwen3 stores (AIME24+25, 500-token segments): the shape a real
    reasoning model's probes have, to read the tiny model's against."""
    from autotts.controllers.normalize import is_correct
    from autotts.offline.evaluate import bundled_data_dir
    from autotts.offline.store import load_store

    out = {}
    for model in ("Qwen3-0.6B", "Qwen3-8B"):
        running, latest = {k: [0, 0] for k in depths}, {k: [0, 0] for k in depths}
        for name in ("aime24", "aime25"):
            store = load_store(bundled_data_dir() / model / f"{name}.parquet")
            for i in range(store.n_questions):
                q = store.question(i)
                for trace_probes, final in zip(q.probes, q.finals, strict=True):
                    for k in depths:
                        answer = trace_probes[k] if k < len(trace_probes) else final
                        if k < len(trace_probes):
                            running[k][0] += is_correct(answer, q.gold)
                            running[k][1] += 1
                        latest[k][0] += is_correct(answer, q.gold)
                        latest[k][1] += 1
        out[model] = {"running_traces_only": {str(k): round(c[0] / c[1], 4) for k, c in running.items() if c[1]},
                      "latest_answer_all_traces": {str(k): round(c[0] / c[1], 4) for k, c in latest.items()}}
    return out


def sample(model: Path, rows: list[dict], n: int, delta: int, max_tokens: int) -> dict:
    """n samples per question and a probe after every Δ tokens of each, on vLLM's offline engine (batched)."""
    from autotts.controllers.extractors import THINK_CLOSE
    from autotts.engines.backends import probe_suffix_for
    from autotts.offline.collect import CollectSettings
    from autotts.server.tiny_task import check
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=str(model), enforce_eager=True, kv_cache_memory_bytes=256 * 2**20, block_size=32,
              enable_prefix_caching=True, seed=0)
    tok = llm.get_tokenizer()
    prompts = [tok.apply_chat_template([{"role": "user", "content": r["question"]}], add_generation_prompt=True,
                                       tokenize=True, return_dict=False) for r in rows]
    start = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                        SamplingParams(n=n, temperature=1.0, top_p=1.0, max_tokens=max_tokens), use_tqdm=False)
    sample_s = time.perf_counter() - start
    collect = CollectSettings(model=str(model), dataset="chain-hard")  # what `autotts collect` probes with
    extractor, probe_max = collect.answers, collect.probe_max_tokens
    suffix = tok.encode(extractor.probe_suffix, add_special_tokens=False)
    close = tok.encode(THINK_CLOSE, add_special_tokens=False)  # as the backend: no second </think>
    single, vote, first, tokens = [0, 0], [0, 0], [0, 0], []
    probes, where, finals = [], [], []  # finals: (question, final answer, segments) per trace
    for row, prompt, out in zip(rows, prompts, outs, strict=True):
        answers = [extractor.final(tok.decode(c.token_ids)) for c in out.outputs]
        for c in out.outputs:
            said = re.search(r"\nso (\d)\n", c.text)
            first[0] += bool(said) and check(row["question"], said.group(1))
            first[1] += 1
        single[0] += sum(check(row["question"], a) for a in answers)
        single[1] += len(answers)
        counts = Counter(a for a in answers if a)
        vote[0] += bool(counts) and check(row["question"], counts.most_common(1)[0][0])
        vote[1] += 1
        for c, answer in zip(out.outputs, answers, strict=True):
            ids = list(c.token_ids)
            tokens.append(len(ids))
            finals.append((row["question"], answer, math.ceil(len(ids) / delta)))
            for k in range(1, math.ceil(len(ids) / delta)):  # as collect: a probe per segment before the last
                cut = ids[:k * delta]
                probes.append(TokensPrompt(prompt_token_ids=prompt + cut + probe_suffix_for(cut, suffix, close)))
                where.append((len(finals) - 1, k))
    start = time.perf_counter()
    probe_outs = llm.generate(probes, SamplingParams(temperature=1.0, top_p=1.0, max_tokens=probe_max),
                              use_tqdm=False)
    probe_s = time.perf_counter() - start
    by_depth: dict[int, list[int]] = {}
    probe_right: dict[tuple[int, int], bool] = {}
    for (trace, k), out in zip(where, probe_outs, strict=True):
        cell = by_depth.setdefault(k, [0, 0])
        reply = out.outputs[0]
        text = tok.decode(reply.token_ids)
        if reply.finish_reason == "length":  # as the backend: a cut may end inside a character
            text = text.rstrip("\ufffd")
        probe_right[trace, k] = check(finals[trace][0], extractor.probe(text))
        cell[0] += probe_right[trace, k]
        cell[1] += 1
    return {
        "questions": len(rows), "samples": single[1],
        "single_sample_accuracy": round(single[0] / single[1], 4), "single_sample_ci95": wilson(*single),
        f"sc@{n}_accuracy": round(vote[0] / vote[1], 4), "sc_ci95": wilson(*vote),
        "first_pass_accuracy": round(first[0] / first[1], 4), "first_pass_ci95": wilson(*first),
        "probe": {"suffix": extractor.probe_suffix, "max_tokens": probe_max, "extractor": extractor.spec()},
        "probe_accuracy_by_depth": {str(k): {"accuracy": round(c[0] / c[1], 4), "probes": c[1]}
                                    for k, c in sorted(by_depth.items())},
        "answer_accuracy_by_depth": latest_answer_curve(finals, probe_right, check),
        "tokens_per_sample": round(sum(tokens) / len(tokens), 2),
        "sample_wall_s": round(sample_s, 1), "probe_wall_s": round(probe_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/autotts-tiny-bench", help="model, stores and logs")
    p.add_argument("--questions", type=int, default=200, help="fresh hard-split questions (default 200)")
    p.add_argument("--n", type=int, default=16, help="traces per question (default 16)")
    p.add_argument("--segment-tokens", type=int, default=16, help="Δ (default 16)")
    p.add_argument("--max-tokens", type=int, default=320, help="trace cap (default 320)")
    p.add_argument("--question-seed", type=int, default=1, help="generator seed of the question set (default 1)")
    p.add_argument("--settings", default="{}", help="training settings to change, as JSON (default: none)")
    p.add_argument("--out", default=str(HERE / "results" / "tiny_model.json"))
    ns = p.parse_args(argv)

    from autotts.server.tiny_task import questions
    from autotts.server.tiny_train import TrainSettings, train_chain_model

    work = Path(ns.workdir)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model, manifest = train_chain_model(work / "model", TrainSettings(**json.loads(ns.settings)))
    train = {"settings_key": manifest["key"], "cached": manifest["cached"], "train_s": manifest["train_s"],
             "train_cpu_s": manifest.get("train_cpu_s"), "load_avg_during_training": manifest.get("load_avg"),
             "final_loss": manifest["final_loss"], "load_avg_before": [round(x, 2) for x in load_before],
             "load_avg_after": [round(x, 2) for x in os.getloadavg()],
             "this_run_wall_s": round(time.perf_counter() - wall0, 1),
             "this_run_cpu_s": round(time.process_time() - cpu0, 1), "settings": manifest["settings"]}
    print(f"model: {json.dumps(train)}", flush=True)

    rows = questions(ns.questions, split="hard", seed=ns.question_seed)
    load_sample = os.getloadavg()
    metrics = sample(model, rows, ns.n, ns.segment_tokens, ns.max_tokens)
    print(f"measured: {json.dumps(metrics)}", flush=True)

    sc_key = next(k for k in metrics if k.startswith("sc@"))
    running = metrics["probe_accuracy_by_depth"]
    running_cells = [(running[k]["accuracy"], running[k]["probes"]) for k in sorted(running, key=int)
                     if running[k]["probes"] >= 50]
    latest = metrics["answer_accuracy_by_depth"]
    latest_cells = [(latest[k]["accuracy"], latest[k]["traces"]) for k in sorted(latest, key=int)]
    targets = {"single_in_0.30_0.80": 0.30 <= metrics["single_sample_accuracy"] <= 0.80,
               "sc_at_least_plus_0.10": metrics[sc_key] - metrics["single_sample_accuracy"] >= 0.10,
               "answer_rises_with_depth": never_falls(latest_cells),
               "answer_rises_within_noise": rises_within_noise(latest_cells)}
    diagnostics = {"running_probe_rises_with_depth": never_falls(running_cells),
                   "running_probe_rises_within_noise": rises_within_noise(running_cells)}
    result = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_at_sampling": [round(x, 2) for x in load_sample],
                          "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
              "train": train,
              "sampling": {"engine": "vllm offline LLM (CPU build)", "questions": ns.questions, "split": "hard",
                           "question_seed": ns.question_seed, "n": ns.n, "segment_tokens": ns.segment_tokens,
                           "max_tokens": ns.max_tokens, "temperature": 1.0, "top_p": 1.0},
              "metrics": metrics,
              "targets_met": targets, "diagnostics": diagnostics,
              "qwen3_reference": qwen3_reference()}
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(targets), f"-> {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

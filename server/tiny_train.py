"""Train a small Qwen3 model on the `chain` task (autotts.server.tiny_task) on CPU, deterministically.

The random-weight model of `tiny_model` proves the engine path but answers noise; this one reasons: it
writes the chain inside ``<think>``, boxes the result, and answers a probe (a cut-off chain followed by
the answer-forcing suffix) with the answer the trace has reached. Training data mixes whole verified
solutions (a first pass, its answer, a check pass: autotts.server.tiny_task) written by a teacher that slips
at rate `slip` per result in the first pass and `check_slip` in the check (so temperature-1 samples slip
too) with cut-off traces whose target is what a probe there can know: the right answer from the values
written so far during the first pass (a guess), the answer the first pass reached once it is written,
through the check pass (so probes get better with depth). The boxed answer of a whole solution is that
same answer, so every whole solution also teaches "after \\boxed{, copy the answer after `so`", which is
exactly what a probe after the first pass must do (the probe examples alone, two labelled tokens each,
were too small a share of the loss to teach it; docs/tiny_model.md).

Same settings, same weights: torch is seeded, one thread per run, a fixed number of steps, a fixed batch
order. How fast a seed learns the arithmetic varies a lot (docs/tiny_model.md: at 900 steps three seeds
of four reach a final loss near 0.04, the fourth stays near 0.12 and answers at chance), and so does the
same seed on another CPU's floating point; so `candidates` runs train at once, one per core, with seeds
`seed`, `seed + 1`, …, and the one with the lowest final loss is kept. The output directory holds
``autotts-train.json`` with the settings and their hash; building again with the same settings returns
at once, different settings refuse to overwrite, and a copy is kept under `cache_dir()` by that hash so
another directory with the same settings is a copy, not a new training run.
Ship this builder, never the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .tiny_model import SPECIAL_TOKENS, THINK_TOKENS
from .tiny_task import Chain, checking, first_answer, sample_chain

__all__ = ["PROBE_SUFFIX", "TrainSettings", "cache_dir", "train_chain_model"]

PROBE_SUFFIX = "\n</think>\n\n\\boxed{"  # the gateway's and collect's default answer-forcing suffix
MANIFEST = "autotts-train.json"
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides the weights (hashed into the cache key)."""

    task: str = "chain"
    seed: int = 0
    steps: int = 900
    batch: int = 32
    lr: float = 7e-3
    slip: float = 0.04  # the teacher's slip rate per written result, first pass
    check_slip: float = 0.02  # ... and in the check pass
    solution: str = "verify-running"  # the solution format (tiny_task.Chain.solution); part of the cache key
    probe_share: float = 0.4  # fraction of sequences that are cut-off traces + a forced answer
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    threads: int = 1  # more threads spin-wait on a shared machine: 10x the CPU time per step
    candidates: int = 2  # runs trained in parallel processes (seeds seed, seed + 1, ...); the lowest loss is kept

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _tokenizer(out: Path):
    """Byte-level BPE with single-digit tokens, merges learned on task text only (a few hundred tokens)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    rng = random.Random(0)
    corpus = ["<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n system"] * 50
    corpus += [sample_chain(rng, "train").text() + "\n" + sample_chain(rng, "train").solution() for _ in range(200)]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS + THINK_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"], chat_template=CHAT_TEMPLATE,
                                 model_max_length=4096, clean_up_tokenization_spaces=False)
    hf.save_pretrained(out)
    return hf


class _Examples:
    """Token-level training sequences: (ids, labels) with -100 where no loss is taken."""

    def __init__(self, tok, settings: TrainSettings) -> None:
        self.tok, self.s = tok, settings
        self.enc: dict[str, list[int]] = {}
        self.eos = tok.convert_tokens_to_ids("<|im_end|>")
        self.suffix = self.ids(PROBE_SUFFIX)

    def ids(self, text: str) -> list[int]:
        if text not in self.enc:
            self.enc[text] = self.tok.encode(text, add_special_tokens=False)
        return self.enc[text]

    def prompt(self, chain: Chain) -> list[int]:
        return self.tok.apply_chat_template([{"role": "user", "content": chain.text()}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)

    def make(self, rng: random.Random) -> tuple[list[int], list[int]]:
        chain = sample_chain(rng, "train")
        prompt = self.prompt(chain)
        first, second = chain.lines(rng, self.s.slip), chain.lines(rng, self.s.check_slip)
        said = first[-1][1]
        head = self.ids("<think>\n")
        newline = len(self.ids("\n"))
        body: list[int] = []
        known: list[int] = [chain.answer()]  # known[c]: a probe's target after body[:c]
        for i, (line, value) in enumerate(first):  # a guess until the line's result is written
            before = chain.finish_from(i, first[i - 1][1] if i else chain.start)
            line_ids = self.ids(line)
            known += [before] * (len(line_ids) - 1 - newline) + [chain.finish_from(i + 1, value)] * (1 + newline)
            body += line_ids
        for piece in [first_answer(said), *(checking(line, said) for line, _ in second)]:
            body += self.ids(piece)
        known += [said] * (len(body) + 1 - len(known))  # from the first pass's last result on: its answer
        if rng.random() >= self.s.probe_share:
            tail = [*self.ids(f"</think>\n\n\\boxed{{{said}}}"), self.eos]
            completion = head + body + tail
            return prompt + completion, [-100] * len(prompt) + completion
        cut = rng.randint(0, len(body))
        answer = self.ids(f"{known[cut]}}}")
        ids = prompt + head + body[:cut] + self.suffix + answer
        return ids, [-100] * (len(ids) - len(answer)) + answer


def _model(vocab: int, tok, s: TrainSettings):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(vocab_size=vocab, hidden_size=s.hidden, intermediate_size=4 * s.hidden,
                         num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.heads // 2,
                         head_dim=32, max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = [eos, pad]
    return model


def cache_dir() -> Path:
    """Where trained models are kept by settings hash: $AUTOTTS_CACHE_DIR, else ~/.cache/autotts."""
    root = os.environ.get("AUTOTTS_CACHE_DIR") or Path.home() / ".cache" / "autotts"
    return Path(root) / "tiny-models"


def train_chain_model(out_dir: str | Path, settings: TrainSettings | None = None, *, use_cache: bool = True,
                      progress: Callable[[int, float], None] | None = None) -> tuple[Path, dict]:
    """Train (or reuse) the model and write an HF model dir vLLM loads to `out_dir`; return (path, manifest).

    With `use_cache`, a model trained before with the same settings (in `cache_dir()/<key>`) is copied
    instead of trained again, and a new one is kept there."""
    s = settings or TrainSettings()
    if s.task != "chain":
        raise ValueError(f"unknown task {s.task!r}; known: chain")
    if s.solution != "verify-running":
        raise ValueError(f"unknown solution format {s.solution!r}; known: verify-running")
    if (s.heads % 2 or s.hidden % s.heads or s.steps < 1 or s.batch < 1 or not 0 <= s.slip < 1
            or not 0 <= s.check_slip < 1 or not 1 <= s.candidates <= 16):
        raise ValueError(f"bad training settings (need even heads, steps and batch >= 1, 0 <= slip, "
                         f"check_slip < 1, 1 <= candidates <= 16): {s}")
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == s.key() and (out / "model.safetensors").is_file():
            return out, {**manifest, "cached": True}
        raise ValueError(f"{out} holds a model trained with other settings ({manifest.get('settings')}); "
                         f"choose another directory")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not a tiny-model directory; choose an empty or new one")
    cached = cache_dir() / s.key()
    if use_cache and (cached / MANIFEST).is_file():
        shutil.copytree(cached, out, dirs_exist_ok=True)
        return out, {**json.loads((cached / MANIFEST).read_text()), "cached": True}
    manifest = _train(out, s, progress)
    if use_cache:
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        shutil.copytree(out, tmp, dirs_exist_ok=True)
        try:
            tmp.rename(cached)
        except OSError:  # another process kept the same model first
            shutil.rmtree(tmp, ignore_errors=True)
    return out, {**manifest, "cached": False}


def _train(out: Path, s: TrainSettings, progress: Callable[[int, float], None] | None) -> dict:
    """One run, or `s.candidates` runs in parallel processes of which the lowest final loss is kept."""
    if s.candidates == 1:
        return _train_one(out, s, progress)
    import multiprocessing
    import queue as queues

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    start, load, events = time.perf_counter(), os.getloadavg(), ctx.Queue()
    runs = [(out / f".candidate{i}", replace(s, seed=s.seed + i, candidates=1)) for i in range(s.candidates)]
    procs = [ctx.Process(target=_candidate, args=(str(d), c, i, events), daemon=True) for i, (d, c) in enumerate(runs)]
    done: dict[int, dict] = {}
    try:
        for proc in procs:
            proc.start()
        while len(done) < len(procs):
            try:
                kind, i, payload = events.get(timeout=5)
            except queues.Empty:
                dead = [i for i, p in enumerate(procs) if i not in done and not p.is_alive()]
                if dead:
                    raise RuntimeError(f"training run {dead[0]} (seed {runs[dead[0]][1].seed}) died with exit "
                                       f"code {procs[dead[0]].exitcode}") from None
                continue
            if kind == "error":
                raise RuntimeError(f"training run {i} (seed {runs[i][1].seed}) failed: {payload}")
            if kind == "done":
                done[i] = payload
            elif progress and i == 0:
                progress(*payload)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    best = min(done, key=lambda i: (done[i]["final_loss"], i))
    for path in runs[best][0].iterdir():
        if path.name != MANIFEST:
            path.rename(out / path.name)
    for d, _ in runs:
        shutil.rmtree(d, ignore_errors=True)
    manifest = {"key": s.key(), "settings": asdict(s), "train_s": round(time.perf_counter() - start, 1),
                "train_cpu_s": round(sum(m["train_cpu_s"] for m in done.values()), 1),
                "load_avg": [round(x, 2) for x in load], "final_loss": done[best]["final_loss"],
                "kept_seed": runs[best][1].seed,
                "runs": [{"seed": runs[i][1].seed, "final_loss": done[i]["final_loss"],
                          "train_cpu_s": done[i]["train_cpu_s"]} for i in sorted(done)],
                "probe_suffix": PROBE_SUFFIX}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _candidate(out: str, s: TrainSettings, index: int, events) -> None:
    """A training run in a child process: its steps' losses and its manifest go back through `events`."""
    try:
        events.put(("done", index, _train_one(Path(out), s, lambda step, loss: events.put(("step", index,
                                                                                            (step, loss))))))
    except BaseException as exc:  # the parent names the run that failed
        events.put(("error", index, f"{type(exc).__name__}: {exc}"))


def _train_one(out: Path, s: TrainSettings, progress: Callable[[int, float], None] | None) -> dict:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    start, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    tok = _tokenizer(out)
    model = _model(len(tok), tok, s)
    examples, rng = _Examples(tok, s), random.Random(f"train-{s.seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, s.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * max(0.05, 0.5 * (1 + __import__("math").cos(3.14159 * i / s.steps))))
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    model.train()
    losses = []
    for step in range(s.steps):
        batch = [examples.make(rng) for _ in range(s.batch)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step, losses[-1])
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    manifest = {"key": s.key(), "settings": asdict(s), "train_s": round(time.perf_counter() - start, 1),
                "train_cpu_s": round(time.process_time() - cpu, 1), "load_avg": [round(x, 2) for x in load],
                "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
                "probe_suffix": PROBE_SUFFIX}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest

"""The replay store: recorded trajectories with probe answers, as flat arrays backed by Parquet.

On disk (one Parquet file per model × dataset) a row is one (question, branch):
`question_id, question, gold_answer, branch, probe_answers: list<string>, branch_tokens,
final_answer`, with the store's metadata (model, dataset, Δ, tokenizer, source) as JSON under the
schema key ``autotts``. In memory every answer string is interned once in `vocab` and the
branches are integer arrays, so nothing is allocated per probe while replaying. Opening a store
from any of its formats (this Parquet, public JSON, a capture directory): `offline/store.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreError

__all__ = ["FORMAT_VERSION", "META_KEY", "QuestionTrajectories", "ReplayStore"]

FORMAT_VERSION = 1
META_KEY = b"autotts"  # the schema metadata key of the store's JSON metadata


@dataclass(frozen=True)
class QuestionTrajectories:
    """All branches of one question, as plain Python lists for the replay hot path."""

    question: str
    gold: str | None
    probes: list[list[str]]  # per branch, the probe answers (strings interned in the store vocab)
    tokens: list[int]
    finals: list[str]


@dataclass
class ReplayStore:
    """Trajectories of one model on one dataset; `question(i)` gives question i's branches."""

    model: str
    dataset: str
    segment_tokens: int
    questions: list[str]
    golds: list[str | None]
    question_offsets: np.ndarray  # (Q+1,) rows of question i: [offsets[i], offsets[i+1])
    probe_offsets: np.ndarray  # (R+1,) probes of row r: codes[probe_offsets[r]:probe_offsets[r+1]]
    probe_codes: np.ndarray  # (P,) int32 indices into vocab
    branch_tokens: np.ndarray  # (R,) int64
    final_codes: np.ndarray  # (R,) int32
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    _cache: dict[int, QuestionTrajectories] = field(default_factory=dict, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # e.g. fast-path arrays

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    def n_branches(self, qi: int) -> int:
        return int(self.question_offsets[qi + 1] - self.question_offsets[qi])

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}"

    def question(self, qi: int) -> QuestionTrajectories:
        """Question `qi`'s branches, built once per store and question."""
        cached = self._cache.get(qi)
        if cached is not None:
            return cached
        if not 0 <= qi < self.n_questions:
            raise IndexError(f"{self.name}: question index {qi} out of range 0..{self.n_questions - 1}")
        lo, hi = int(self.question_offsets[qi]), int(self.question_offsets[qi + 1])
        vocab, codes = self.vocab, self.probe_codes
        offs = self.probe_offsets[lo:hi + 1].tolist()
        flat = codes[offs[0]:offs[-1]].tolist()
        base = offs[0]
        probes = [[vocab[c] for c in flat[a - base:b - base]] for a, b in pairwise(offs)]
        trajectories = QuestionTrajectories(
            question=self.questions[qi], gold=self.golds[qi], probes=probes,
            tokens=self.branch_tokens[lo:hi].tolist(),
            finals=[vocab[c] for c in self.final_codes[lo:hi].tolist()])
        self._cache[qi] = trajectories
        return trajectories

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_records(cls, model: str, dataset: str, segment_tokens: int,
                     records: list[dict[str, Any]], meta: dict[str, Any] | None = None,
                     path: str | None = None) -> ReplayStore:
        """Build from validated records: [{question, gold_answer, branches: [(probes, tokens, final)]}]."""
        vocab: dict[str, int] = {}
        intern = vocab.setdefault
        q_off, p_off, codes, tokens, finals = [0], [0], [], [], []
        for rec in records:
            for probes, n_tokens, final in rec["branches"]:
                codes.extend(intern(a, len(vocab)) for a in probes)
                p_off.append(len(codes))
                tokens.append(n_tokens)
                finals.append(intern(final, len(vocab)))
            q_off.append(len(tokens))
        return cls(model=model, dataset=dataset, segment_tokens=segment_tokens,
                   questions=[r["question"] for r in records], golds=[r["gold_answer"] for r in records],
                   question_offsets=np.asarray(q_off, dtype=np.int64),
                   probe_offsets=np.asarray(p_off, dtype=np.int64),
                   probe_codes=np.asarray(codes, dtype=np.int32),
                   branch_tokens=np.asarray(tokens, dtype=np.int64),
                   final_codes=np.asarray(finals, dtype=np.int32),
                   vocab=list(vocab), meta=dict(meta or {}), path=path)

    # --- Parquet --------------------------------------------------------------------------
    def write_parquet(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) as one Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from autotts.controllers.atomic import atomic_path

        rows_per_q = np.diff(self.question_offsets)
        qid = np.repeat(np.arange(self.n_questions, dtype=np.int32), rows_per_q)
        branch = np.concatenate([np.arange(n, dtype=np.int32) for n in rows_per_q]) if len(qid) else qid
        vocab = pa.array(self.vocab, type=pa.string())
        answers = pa.DictionaryArray.from_arrays(pa.array(self.probe_codes, pa.int32()), vocab)
        table = pa.table({
            "question_id": pa.array(qid, pa.int32()),
            "question": pa.DictionaryArray.from_arrays(pa.array(qid, pa.int32()),
                                                       pa.array(self.questions, pa.string())),
            "gold_answer": pa.DictionaryArray.from_arrays(  # a question without a gold answer: null
                pa.array(qid, pa.int32(), mask=np.asarray([g is None for g in self.golds], bool)[qid]),
                pa.array([g or "" for g in self.golds], pa.string())),
            "branch": pa.array(branch, pa.int32()),
            "probe_answers": pa.ListArray.from_arrays(pa.array(self.probe_offsets, pa.int32()),
                                                      answers.cast(pa.string())),
            "branch_tokens": pa.array(self.branch_tokens, pa.int64()),
            "final_answer": pa.DictionaryArray.from_arrays(pa.array(self.final_codes, pa.int32()),
                                                           vocab).cast(pa.string()),
        })
        meta = {"format": FORMAT_VERSION, "model": self.model, "dataset": self.dataset,
                "segment_tokens": self.segment_tokens, **self.meta}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd",
                           use_dictionary=["question", "gold_answer", "probe_answers", "final_answer"])
        return path

    @classmethod
    def read_parquet(cls, path: str | Path) -> ReplayStore:
        """Read and validate a store written by `write_parquet` (or any file of that schema)."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{path}: not a readable Parquet store ({exc})") from None
        need = ["question_id", "question", "gold_answer", "probe_answers", "branch_tokens", "final_answer"]
        missing = [c for c in need if c not in table.column_names]
        if missing:
            raise StoreError(f"{path}: missing column(s) {', '.join(missing)}")
        raw = (table.schema.metadata or {}).get(META_KEY)
        try:
            meta = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise StoreError(f"{path}: metadata key 'autotts' is not valid JSON") from exc
        sort = [("question_id", "ascending")] + ([("branch", "ascending")] if "branch" in table.column_names else [])
        table = table.sort_by(sort)
        qid = table.column("question_id").to_numpy()
        if pc.any(pc.is_null(table.column("question_id"))).as_py():
            raise StoreError(f"{path}: column question_id has nulls")
        tokens = table.column("branch_tokens").to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~(tokens >= 0))
        if len(bad):
            raise StoreError(f"{path}: question {int(qid[bad[0]])}: branch_tokens must be >= 0, "
                             f"got {tokens[bad[0]]}")
        probes = table.column("probe_answers").combine_chunks()
        finals = table.column("final_answer").combine_chunks()
        if probes.null_count or pc.any(pc.is_null(probes.flatten())).as_py() or finals.null_count:
            raise StoreError(f"{path}: probe_answers / final_answer must not contain nulls")
        answers = pa.concat_arrays([probes.flatten().cast(pa.string()), finals.cast(pa.string())])
        encoded = pc.dictionary_encode(answers)
        codes = encoded.indices.to_numpy().astype(np.int32)
        n_probe = len(codes) - len(finals)
        starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]]) if len(qid) else np.array([], np.int64)

        def first(name: str) -> list:  # one value per question: its first row's
            return table.column(name).take(pa.array(starts)).to_pylist()

        offsets = probes.offsets.to_numpy().astype(np.int64)
        offsets -= offsets[0]
        seg = meta.get("segment_tokens")
        if not isinstance(seg, int) or seg <= 0:
            raise StoreError(f"{path}: metadata field segment_tokens must be a positive int, got {seg!r}")
        questions = first("question")
        if any(q is None for q in questions):
            raise StoreError(f"{path}: question {questions.index(None)}: question text is null")
        return cls(model=str(meta.get("model", path.parent.name)), dataset=str(meta.get("dataset", path.stem)),
                   segment_tokens=seg, questions=questions, golds=first("gold_answer"),
                   question_offsets=np.r_[starts, len(qid)].astype(np.int64), probe_offsets=offsets,
                   probe_codes=codes[:n_probe], branch_tokens=tokens.astype(np.int64),
                   final_codes=codes[n_probe:], vocab=encoded.dictionary.to_pylist(),
                   meta={k: v for k, v in meta.items()
                         if k not in ("format", "model", "dataset", "segment_tokens")},
                   path=str(path))

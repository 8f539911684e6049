"""Traffic capture: served episodes appended to a replay store, for evaluation and rediscovery.

Off unless ``capture_dir`` is set and ``capture_rate > 0``. For each successful request the gateway
hands the finished episodes to `TrafficCapture.submit`, which decides by a hash of the completion id
(a `capture_rate` fraction of requests, the same decision on every replica), turns each episode into
one row per branch (what the controller saw: probe answers per segment, decoded tokens, final answer;
see autotts.offline.capture_store for the schema and how truncated branches replay) and queues them.
A background thread batches the rows into ``CAPTURE_DIR/<model>/seg<Δ>/capture-<time>-<proc>-<seq>.parquet``
(``seg<Δ>-<kind>-<hash>`` for answers read by an extractor other than boxed: one store, one extractor, recorded
in its metadata with its probe suffix as `autotts collect` records it)
files of at most ``capture_rows_per_file`` episodes, each written atomically, flushed when full, when
the oldest buffered episode is `flush_interval_s` old, and on shutdown. ``POST /v1/feedback`` labels of
captured completions are appended to ``labels-<proc>.jsonl`` beside them (one ``write`` per line).

Capture never fails or delays a request: the event loop only builds the rows and puts them on a
bounded queue; a full queue, or any error, is logged and counted in ``autotts_capture_errors_total``;
written episodes are counted in ``autotts_captured_total``. Privacy: docs/capture.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotts.controllers.observation import BranchView

if TYPE_CHECKING:
    from .config import GatewayConfig
    from .executor import EpisodeOutcome
    from .jobs import Job
    from .metrics import GatewayMetrics

__all__ = ["TrafficCapture", "branch_row", "prompt_key"]

log = logging.getLogger(__name__)

NO_ANSWER = "ERR"
_SALT = b"autotts-capture:"


def prompt_key(text: str) -> str:
    """The sha256 of a prompt: groups captured episodes by question, and replaces the text when redacted."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


def branch_row(view: BranchView, decoded: int) -> dict[str, Any] | None:
    """One branch as a store row (None for a branch that never decoded a segment).

    ``probe_answers[k]`` is the first answer revealed at depth k+1 (``ERR`` where the controller did
    not probe); a finished branch ends with its final answer at its last depth, an unfinished one is
    cut there with its latest revealed answer as final (``complete`` False).
    """
    if view.depth < 1:
        return None
    answers, depths = view.answers, view.depths
    if view.finished:  # the last reveal is the final answer itself
        answers, depths = answers[:-1], depths[:-1]
    n = view.depth - 1
    at: dict[int, str] = {}
    for answer, depth in zip(answers, depths, strict=True):
        if 1 <= depth <= n:
            at.setdefault(depth, answer)
    final = view.final if view.finished else view.latest
    return {"probe_answers": [at.get(k, NO_ANSWER) for k in range(1, n + 1)], "branch_tokens": int(decoded),
            "final_answer": NO_ANSWER if final is None else final, "opened": view.id,
            "complete": bool(view.finished), "pruned": bool(view.pruned), "revealed_depths": sorted(at)}


def extractor_tag(spec: dict[str, Any]) -> str:
    """The leaf's suffix for answers read by `spec`: none for boxed, else its kind and a hash of the spec."""
    if spec.get("kind", "boxed") == "boxed":
        return ""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec['kind']}-{digest}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


class TrafficCapture:
    def __init__(self, directory: str | Path, *, rate: float, redact: bool = False, rows_per_file: int = 1000,
                 engine: str = "", probe_suffix: str | None = None, metrics: GatewayMetrics | None = None,
                 flush_interval_s: float = 30.0, queue_size: int = 10_000, remember: int = 100_000) -> None:
        self.directory = Path(directory)
        self.rate, self.redact, self.rows_per_file = rate, redact, rows_per_file
        self.engine, self.probe_suffix, self.metrics = engine, probe_suffix, metrics
        self.flush_interval_s = flush_interval_s
        self.proc = secrets.token_hex(3)  # keeps file names of replicas sharing a directory apart
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=queue_size)
        self._captured: OrderedDict[str, tuple[str, int, str]] = OrderedDict()  # completion id → leaf key
        self._remember = remember
        self._thread: threading.Thread | None = None
        self._seq = 0

    @classmethod
    def from_config(cls, config: GatewayConfig, metrics: GatewayMetrics | None = None) -> TrafficCapture | None:
        if not config.capture_dir or config.capture_rate <= 0:
            return None
        return cls(config.capture_dir, rate=config.capture_rate, redact=config.capture_redact,
                   rows_per_file=config.capture_rows_per_file, engine=config.engine,
                   probe_suffix=None if config.engine == "replay" else config.probe_suffix, metrics=metrics)

    # --- lifetime -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._thread = threading.Thread(target=self._writer, name="autotts-capture", daemon=True)
            self._thread.start()

    def flush(self, timeout: float | None = 60.0) -> None:
        """Block until everything queued so far is on disk (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait(timeout)

    def close(self) -> None:
        """Write what is buffered and stop the writer (blocking: call it off the event loop)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # --- event-loop side: cheap, never raises ---------------------------------------------
    def wants(self, completion_id: str) -> bool:
        if self.rate >= 1:
            return True
        if self.rate <= 0:
            return False
        digest = hashlib.sha256(_SALT + completion_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") < self.rate * 2**64

    def submit(self, job: Job, outcomes: list[EpisodeOutcome]) -> bool:
        """Queue the request's episodes if it is sampled; True when queued."""
        try:
            if not self.wants(job.rid):
                return False
            if self._thread is None:
                self.start()
            key = prompt_key(job.question)
            question = f"[redacted] sha256:{key}" if self.redact else job.question
            created = time.time()
            sel = job.selection
            seg = job.backends[0].segment_tokens
            extractor = job.reply.extractor
            leaf = (job.model, seg, extractor_tag(extractor.spec()))
            meta = {"model": job.model, "dataset": f"capture-seg{seg}", "segment_tokens": seg, "engine": self.engine,
                    "probe_suffix": None if self.engine == "replay" else extractor.probe_suffix,
                    "extractor": extractor.spec(), "aggregator": job.aggregator.spec, "redacted": self.redact}
            for i, (outcome, backend) in enumerate(zip(outcomes, job.backends, strict=True)):
                sampling = backend.sampling
                common = {"question": question, "prompt_sha256": key, "completion_id": job.rid, "choice": i,
                          "seed": job.seeds[i], "created": created, "controller": sel.name,
                          "spec": job.controller.spec if sel.controller else "none",
                          "controller_version": sel.version, "arm": sel.arm, "engine": self.engine,
                          "answer": outcome.answer, "fallback": job.fallbacks.get(i),
                          "temperature": sampling.temperature if sampling else None,
                          "top_p": sampling.top_p if sampling else None}
                rows = []
                for view in outcome.obs.branches:
                    row = branch_row(view, backend.decoded_tokens(view))
                    if row is not None:
                        rows.append({**common, **row})
                if rows:
                    self._queue.put_nowait(("episode", leaf, meta, rows))
            self._captured[job.rid] = leaf
            while len(self._captured) > self._remember:
                self._captured.popitem(last=False)
            return True
        except Exception:  # never the request's problem
            log.warning("capture of request %s failed", getattr(job, "rid", "?"), exc_info=True)
            self._error()
            return False

    def label(self, completion_id: str, *, correct: bool | None, gold: str | None, answer: str | None) -> bool:
        """Record a feedback label of a captured completion (gold: given, or the answer judged correct)."""
        leaf = self._captured.get(completion_id)
        if leaf is None:
            return False
        if gold is None and correct:
            gold = answer
        line = {"completion_id": completion_id, "gold": gold, "correct": correct, "answer": answer,
                "created": time.time()}
        try:
            self._queue.put_nowait(("label", leaf, line))
            return True
        except Exception:
            log.warning("capture: label of %s dropped", completion_id, exc_info=True)
            self._error()
            return False

    def _error(self, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.capture_errors.inc(n)

    # --- writer thread --------------------------------------------------------------------
    def leaf_dir(self, leaf: tuple[str, int, str]) -> Path:
        model, seg, tag = leaf
        return self.directory / _safe(model) / (f"seg{seg}-{tag}" if tag else f"seg{seg}")

    def _writer(self) -> None:
        buffers: dict[tuple[str, int, str], list[list[dict[str, Any]]]] = {}
        metas: dict[tuple[str, int, str], dict[str, Any]] = {}
        oldest: float | None = None
        while True:
            wait = None if oldest is None else max(0.0, oldest + self.flush_interval_s - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = ("flush", None)
            if item is None or item[0] == "flush":
                for leaf in list(buffers):
                    self._write(leaf, metas[leaf], buffers.pop(leaf))
                oldest = None
                if item is None:
                    return
                if item[1] is not None:
                    item[1].set()
            elif item[0] == "episode":
                _, leaf, meta, rows = item
                metas[leaf] = meta
                episodes = buffers.setdefault(leaf, [])
                episodes.append(rows)
                oldest = oldest if oldest is not None else time.monotonic()
                if len(episodes) >= self.rows_per_file:
                    self._write(leaf, meta, buffers.pop(leaf))
                    oldest = None if not buffers else oldest
            elif item[0] == "label":
                self._append_label(item[1], item[2])

    def _write(self, leaf: tuple[str, int, str], meta: dict[str, Any], episodes: list[list[dict[str, Any]]]) -> None:
        try:
            import pyarrow.parquet as pq
            from autotts.controllers.atomic import atomic_path
            from autotts.offline.capture_store import capture_table

            table = capture_table([row for rows in episodes for row in rows], meta)
            self._seq += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            path = self.leaf_dir(leaf) / f"capture-{stamp}-{self.proc}-{self._seq:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp, compression="zstd")
        except Exception:
            log.warning("capture: writing %d episode(s) failed; they are lost", len(episodes), exc_info=True)
            self._error(len(episodes))
        else:
            if self.metrics is not None:
                self.metrics.captured.inc(len(episodes))

    def _append_label(self, leaf: tuple[str, int, str], line: dict[str, Any]) -> None:
        try:
            path = self.leaf_dir(leaf) / f"labels-{self.proc}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)  # one write of one line: appends never interleave
            finally:
                os.close(fd)
        except Exception:
            log.warning("capture: writing a feedback label failed", exc_info=True)
            self._error()

#!/usr/bin/env python3
"""The closed loop in one script, on a small model that really reasons: train, collect, discover, A/B, report.

1. train the chain model (`autotts tiny-model --task chain`; CPU, cached by its settings; no downloads),
2. start vLLM's OpenAI server on CPU with prefix caching (skipped with --engine-url),
3. `autotts collect` a replay store on one set of chain questions (N probed traces per question),
4. `autotts discover --explorer local` on that store (a short run) → a controller artifact,
5. `autotts serve` three A/B arms: ``sc`` (self-consistency), ``cmc`` (β=0.5) and ``discovered``,
6. send *fresh* questions of the same generator through the official `openai` client, one user each (the
   gateway's hash puts each user in an arm), and label every completion through ``POST /v1/feedback``
   with the task's exact checker,
7. `autotts ab report` on the gateway's /metrics: per-arm accuracy and tokens, and whether the
   difference is significant.

Every process it starts is stopped on exit, on Ctrl-C and on SIGTERM. See README.md next to this file.

    python examples/closed_loop/run.py --workdir /tmp/closed-loop
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALIAS = "discovered"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  python examples/closed_loop/run.py --workdir /tmp/closed-loop\n"
                                       "  python examples/closed_loop/run.py --engine-url http://127.0.0.1:8000 "
                                       "--served-model-name chain   # reuse a vLLM serving the chain model")
    p.add_argument("--workdir", help="where the model, store, discovery run and logs go (default: a new temp dir)")
    p.add_argument("--engine-url", help="use this running vLLM server (serving --served-model-name) instead of "
                                        "training the model and starting one")
    p.add_argument("--served-model-name", default="chain", help="the engine's model name (default chain)")
    p.add_argument("--vllm-python", default=os.environ.get("AUTOTTS_VLLM_PYTHON") or sys.executable,
                   help="Python that has vllm installed (default: this one, or $AUTOTTS_VLLM_PYTHON)")
    p.add_argument("--collect-questions", type=int, default=6, help="questions in the store (default 6)")
    p.add_argument("--traces", type=int, default=16, help="traces per collected question, and the most branches "
                   "the gateway lets an episode open, so live offers what replay offers (default 16)")
    p.add_argument("--segment-tokens", type=int, default=32, help="Δ (default 32)")
    p.add_argument("--max-tokens", type=int, default=320, help="trace length cap (default 320)")
    p.add_argument("--requests", type=int, default=18, help="fresh questions sent to the gateway (default 18)")
    p.add_argument("--parallel", type=int, default=4, help="requests in flight at once (default 4)")
    p.add_argument("--sc-n", type=int, help="branches of the sc arm (default: --traces)")
    p.add_argument("--beta", type=float, default=0.5, help="β of the cmc and discovered arms (default 0.5)")
    p.add_argument("--summary", help="also write the summary as JSON to this file")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Child processes (each in its own session), stopped together on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - the child owns it until it exits
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.children.append((name, proc))
        return proc

    def wait_healthy(self, name: str, proc: subprocess.Popen, url: str, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; log: {self.logs / (name + '.log')}\n"
                                   f"{tail(self.logs / (name + '.log'))}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy after {timeout_s:.0f}s; log: {self.logs / (name + '.log')}")
            time.sleep(0.5)

    def stop_all(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                print(f"stopped {name} (pid {proc.pid})", flush=True)
        self.children.clear()


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def autotts(args: list[str], log: Path, timings: dict[str, float], step: str) -> None:
    """Run one `autotts` command (this interpreter), its output to `log`; fail with its tail."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run([sys.executable, "-m", "autotts.cli.main", *args], stdout=fh,
                              stderr=subprocess.STDOUT).returncode
    timings[step] = round(time.perf_counter() - start, 1)
    if code != 0:
        raise RuntimeError(f"autotts {args[0]} failed ({code}); log: {log}\n{tail(log)}")
    print(f"[{step}] {timings[step]:.1f}s  ({log.name})", flush=True)


#: vLLM 0.32's CPU build dies ("CPU Generator does not use offset") when a seeded request's prefill is
#: split across steps; many requests in flight overflow the CPU default of 2048 tokens a step
NO_PARTIAL_PREFILL = ("--no-enable-chunked-prefill", "--max-num-batched-tokens", "16384")


def start_vllm(ns: argparse.Namespace, work: Path, procs: Processes, timings: dict[str, float]) -> str:
    model = work / "model"
    if not (model / "config.json").is_file():
        start = time.perf_counter()
        with open(procs.logs / "tiny-model.log", "w") as fh:
            code = subprocess.run([ns.vllm_python, "-m", "autotts.cli.main", "tiny-model", "--task", "chain",
                                   str(model)], stdout=fh, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise RuntimeError(f"tiny-model failed; log: {procs.logs / 'tiny-model.log'}")
        timings["tiny_model"] = round(time.perf_counter() - start, 1)
        print(f"[tiny_model] {timings['tiny_model']:.1f}s -> {model}", flush=True)
    port = free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TORCHDYNAMO_DISABLE": "1",
           "VLLM_CACHE_ROOT": str(work / "vllm-cache")}
    start = time.perf_counter()
    proc = procs.start("vllm", [ns.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                                "--served-model-name", ns.served_model_name, "--enforce-eager",
                                "--kv-cache-memory-bytes", str(256 * 2**20), "--block-size", "32",
                                "--enable-prefix-caching", "--enable-prompt-tokens-details", *NO_PARTIAL_PREFILL,
                                "--host", "127.0.0.1", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    procs.wait_healthy("vllm", proc, url, timeout_s=600)
    timings["vllm_start"] = round(time.perf_counter() - start, 1)
    print(f"[vllm_start] {timings['vllm_start']:.1f}s -> {url}", flush=True)
    return url


def discovered_artifact(run_dir: Path) -> Path:
    report = json.loads((run_dir / "report.json").read_text())
    finalists = [f for f in report["finalists"] if f.get("artifact")]
    if not finalists:
        raise RuntimeError(f"discovery wrote no artifact; see {run_dir / 'report.md'}")
    path = Path(finalists[0]["artifact"])
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def send_requests(gateway: str, ns: argparse.Namespace, fresh: list[dict[str, str]]) -> list[dict]:
    """One fresh question per user through the `openai` client; each completion labelled by the checker."""
    import httpx
    from autotts.server.tiny_task import check
    from openai import OpenAI

    client = OpenAI(base_url=gateway + "/v1", api_key="not-needed", timeout=900, max_retries=0)

    def ask(i: int, row: dict[str, str]) -> dict:
        start = time.perf_counter()
        response = client.chat.completions.create(model=ns.served_model_name, user=f"user-{i}", seed=i,
                                                  messages=[{"role": "user", "content": row["question"]}],
                                                  max_tokens=ns.max_tokens)
        tts = response.model_dump().get("tts") or {}
        correct = check(row["question"], tts.get("answer"))
        label = httpx.post(gateway + "/v1/feedback", json={"id": response.id, "correct": correct}, timeout=30)
        label.raise_for_status()
        item = {"arm": tts.get("arm"), "controller": tts.get("controller"), "answer": tts.get("answer"),
                "gold": row["gold_answer"], "correct": correct, "completion_tokens": response.usage.completion_tokens,
                "branches": tts.get("branches"), "wall_s": round(time.perf_counter() - start, 1)}
        print(f"[request {i}] {item['wall_s']:.1f}s arm={item['arm']} branches={item['branches']} "
              f"tokens={item['completion_tokens']} answer={item['answer']!r} gold={row['gold_answer']} "
              f"{'ok' if correct else 'wrong'}", flush=True)
        return item

    with ThreadPoolExecutor(max(1, ns.parallel)) as pool:  # one vLLM batches the episodes in flight
        return list(pool.map(ask, range(len(fresh)), fresh))


def ab_report(gateway: str, arms: list[str]) -> dict:
    """`autotts ab report` of two arms (as a user runs it), printed, and its JSON."""
    cmd = [sys.executable, "-m", "autotts.cli.main", "ab", "report", "--metrics-url", gateway + "/metrics",
           "--arms", ",".join(arms)]
    print(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout, flush=True)
    return json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)


def scrape(gateway: str, controller: str) -> list[str]:
    """The gateway's autotts_* samples of `controller` (token counters, requests, branches, probes, ...)."""
    import httpx

    text = httpx.get(gateway + "/metrics", timeout=10).text
    return [line for line in text.splitlines()
            if line.startswith("autotts_") and f'controller="{controller}"' in line
            and "_bucket{" not in line and "_created{" not in line]


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    ns.sc_n = ns.sc_n or ns.traces
    work = Path(ns.workdir or tempfile.mkdtemp(prefix="autotts-closed-loop-")).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = Processes(logs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if started with SIGINT ignored
    timings: dict[str, float] = {}
    total = time.perf_counter()
    print(f"workdir: {work}", flush=True)
    try:
        from autotts.server.tiny_task import questions

        engine_url = (ns.engine_url or "").rstrip("/") or start_vllm(ns, work, procs, timings)
        qfile, fresh_file = work / "collect.jsonl", work / "fresh.jsonl"
        collect = questions(ns.collect_questions, seed=1)
        qfile.write_text("".join(json.dumps(q) + "\n" for q in collect))
        seen = {q["question"] for q in collect}  # same generator, other questions (the hard split has 300)
        fresh = [q for q in questions(ns.requests + len(seen), seed=2) if q["question"] not in seen][:ns.requests]
        fresh_file.write_text("".join(json.dumps(q) + "\n" for q in fresh))
        store = work / "stores" / "chain" / "closed_loop.parquet"  # kept: a rerun in this workdir reuses it
        autotts(["collect", "--engine", "vllm", "--engine-url", engine_url, "--model", ns.served_model_name,
                 "--questions", str(qfile), "--n", str(ns.traces), "--segment-tokens", str(ns.segment_tokens),
                 "--max-tokens", str(ns.max_tokens), "--probe-max-tokens", "3", "--temperature", "1.0",
                 "--top-p", "1.0", "--model-name", "chain", "--out", str(store), "--no-progress", "--resume"],
                logs / "collect.log", timings, "collect")
        print("   " + tail(logs / "collect.log", 2).splitlines()[0], flush=True)
        run_dir = work / "discover"
        shutil.rmtree(run_dir, ignore_errors=True)
        autotts(["discover", "--explorer", "local", "--data", str(store), "--rounds", "1", "--population", "3",
                 "--search-seeds", "3", "--betas", "0,0.5,1", "--top-k", "1", "--workers", "1", "--time-limit", "3",
                 "--out", str(run_dir), "--no-progress"], logs / "discover.log", timings, "discover")
        artifact = discovered_artifact(run_dir)
        manifest = json.loads((artifact / "manifest.json").read_text())
        print(f"   artifact: {artifact} (controller {manifest['name']})", flush=True)

        port = free_port()
        arms = [{"name": "sc", "controller": f"sc:n={ns.sc_n}", "beta": None, "weight": 1},
                {"name": "cmc", "controller": "cmc", "beta": ns.beta, "weight": 1},
                {"name": ALIAS, "controller": str(artifact), "beta": ns.beta, "weight": 1}]
        config = {"engine": "vllm", "engine_url": engine_url, "model": ns.served_model_name, "arms": arms,
                  "allow_code": True, "segment_tokens": ns.segment_tokens, "probe_max_tokens": 3,
                  "temperature": 1.0, "top_p": 1.0, "default_max_tokens": ns.max_tokens, "max_branches": ns.traces,
                  "feedback_mode": "exact", "host": "127.0.0.1", "port": port}
        (work / "gateway.json").write_text(json.dumps(config, indent=1))
        start = time.perf_counter()
        gateway_proc = procs.start("gateway", [sys.executable, "-m", "autotts.cli.main", "serve", "--config",
                                               str(work / "gateway.json"), "--log-level", "warning"])
        gateway = f"http://127.0.0.1:{port}"
        procs.wait_healthy("gateway", gateway_proc, gateway, timeout_s=300)
        timings["gateway_start"] = round(time.perf_counter() - start, 1)
        print(f"[gateway_start] {timings['gateway_start']:.1f}s -> {gateway}/v1 (arms sc, cmc, {ALIAS})", flush=True)

        start = time.perf_counter()
        answers = send_requests(gateway, ns, fresh)
        timings["requests"] = round(time.perf_counter() - start, 1)
        reports = {f"sc_vs_{ALIAS}": ab_report(gateway, ["sc", ALIAS]), "cmc_vs_sc": ab_report(gateway, ["cmc", "sc"])}
        metrics = scrape(gateway, manifest["name"])
        timings["total"] = round(time.perf_counter() - total, 1)
        summary = {"workdir": str(work), "engine_url": engine_url, "store": str(store), "artifact": str(artifact),
                   "controller": manifest["name"], "alias": ALIAS, "answers": answers, "metrics": metrics,
                   "ab_reports": reports, "timings": timings,
                   "pids": {name: proc.pid for name, proc in procs.children}}
        if ns.summary:
            Path(ns.summary).write_text(json.dumps(summary, indent=1))
        print(f"done in {timings['total']:.0f}s: {json.dumps(timings)}", flush=True)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"closed loop failed: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())

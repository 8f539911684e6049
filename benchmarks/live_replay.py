"""Live equals replay (issue 16, item 4): does `autotts eval` on a collected store predict live serving?

    python benchmarks/live_replay.py                                   # everything, default sizes
    python benchmarks/live_replay.py --collect 10 --fresh 20           # the small end-to-end check
    python benchmarks/live_replay.py --engine-url http://127.0.0.1:8000 --served-model-name chain \\
        --store W/store.parquet --artifact W/discover/artifacts/01_...  # reuse a running vLLM, a store

1. trains (or copies from the cache) the chain model and starts vLLM's OpenAI server on it (CPU build,
   prefix caching), unless --engine-url;
2. `autotts collect` a store on --collect hard questions of the task's generator (--collect-seed), N
   traces each, at the Δ, probe settings, temperature and trace cap the gateway uses below;
3. `autotts discover --explorer local` briefly on that store (or --artifact) → a controller artifact;
4. `autotts eval` on the store predicts, per controller (sc@N, cmc β, the artifact at β), accuracy with
   a 95% interval over the store's questions and tokens per question (decode, + probes × the store's
   measured tokens per probe = decode+probe, what the live gateway charges a controller);
5. `autotts serve --engine vllm` with the same settings, the store's aggregator and ``max_branches``
   set to the store's width (its traces per question) serves the three as aliases, so a controller sees
   the same `branches_available` live as in replay; --fresh questions of another seed go through the
   `openai` client, each answer (`tts.answer`) checked by the task's exact checker; live accuracy
   (Wilson 95%) and tokens per question by kind;
6. writes benchmarks/results/live_replay.json (or --out) after each controller: predicted against live,
   the load average. --together runs the controllers' requests at once (one vLLM batches them all).

Every process it starts is stopped on exit. Nothing here is tuned to the numbers; see docs/tiny_model.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _closed_loop():
    """The closed-loop example's module: its child-process handling (`Processes`, `free_port`) serves here too."""
    import importlib.util

    path = HERE.parent / "examples" / "closed_loop" / "run.py"
    spec = importlib.util.spec_from_file_location("closed_loop_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_loop = _closed_loop()
Processes, free_port, ab_report = _loop.Processes, _loop.free_port, _loop.ab_report
Z95 = 1.959964


def wilson(k: int, n: int) -> list[float]:
    """Wilson 95% interval of k successes in n (sound at 0 and n, unlike the normal one)."""
    if n == 0:
        return [0.0, 1.0]
    p, z2 = k / n, Z95 ** 2
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and its normal 95% interval over independent values (here: questions)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    se = sd / math.sqrt(n)
    return {"mean": round(mean, 4), "se": round(se, 4), "ci95": [round(mean - Z95 * se, 4), round(mean + Z95 * se, 4)],
            "n": n}


def predicted(episodes: list[dict], probe_tokens_per_probe: float) -> dict:
    """A controller's replay prediction from its eval episodes (many shuffle seeds per question).

    The unit that generalises to fresh questions is the question, so a question's seeds are averaged
    first and the interval is over questions: it says where the mean over this generator's questions lies.
    """
    by_q: dict[int, list[dict]] = {}
    for ep in episodes:
        by_q.setdefault(int(ep["question"]), []).append(ep)
    def per_q(f):
        return [sum(f(e) for e in eps) / len(eps) for eps in by_q.values()]
    return {"questions": len(by_q), "episodes": len(episodes),
            "accuracy": mean_ci(per_q(lambda e: float(bool(e["correct"])))),
            "decode_tokens": mean_ci(per_q(lambda e: float(e["tokens"]))),
            "probes": mean_ci(per_q(lambda e: float(e["probes"]))),
            "decode_probe_tokens": mean_ci(per_q(lambda e: e["tokens"] + e["probes"] * probe_tokens_per_probe)),
            "branches": mean_ci(per_q(lambda e: float(e["branches"])))}


def compare(pred: dict, live: dict) -> dict:
    """Live against predicted: inside the prediction's 95% interval, and a two-sample z of the difference."""
    pa, la = pred["accuracy"], live["accuracy"]
    k, n = la["correct"], la["n"]
    p = k / n if n else 0.0
    se = math.sqrt(pa["se"] ** 2 + p * (1 - p) / max(n, 1))
    pt, lt = pred["decode_probe_tokens"]["mean"], live["tokens_spent"]["mean"]
    return {"accuracy_predicted": pa["mean"], "accuracy_predicted_ci95": pa["ci95"], "accuracy_live": round(p, 4),
            "accuracy_live_wilson95": la["wilson95"],
            "live_inside_predicted_ci95": pa["ci95"][0] <= p <= pa["ci95"][1],
            "accuracy_difference_z": round((p - pa["mean"]) / se, 2) if se else None,
            "tokens_predicted_decode_probe": pt, "tokens_live_decode_probe": lt,
            "tokens_live_over_predicted": round(lt / pt, 4) if pt else None,
            "tokens_within_5pct": bool(pt) and abs(lt / pt - 1) <= 0.05,
            "decode_live_over_predicted": round(live["decode_tokens"]["mean"] / pred["decode_tokens"]["mean"], 4)
            if pred["decode_tokens"]["mean"] else None,
            "branches_predicted": pred["branches"]["mean"], "branches_live": live["branches"]["mean"],
            "probes_predicted": pred["probes"]["mean"], "probes_live": live["probes"]["mean"]}


def autotts(args: list[str], log: Path) -> float:
    """Run one `autotts` command with this interpreter; its wall seconds."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.run([sys.executable, "-m", "autotts.cli.main", *args], stdout=fh,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"autotts {args[0]} failed ({code}); see {log}")
    wall = time.perf_counter() - start
    print(f"[{args[0]}] {wall:.0f}s (load {os.getloadavg()[0]:.1f})", flush=True)
    return round(wall, 1)


NO_PARTIAL_PREFILL = _loop.NO_PARTIAL_PREFILL


def start_vllm(ns: argparse.Namespace, work: Path, children: Processes) -> str:
    model = work / "model"
    subprocess.run([sys.executable, "-m", "autotts.cli.main", "tiny-model", "--task", "chain", str(model)],
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TORCHDYNAMO_DISABLE": "1",
           "VLLM_CACHE_ROOT": str(work / "vllm-cache")}
    proc = children.start("vllm", [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                                        str(model), "--served-model-name", ns.served_model_name, "--enforce-eager",
                                        "--kv-cache-memory-bytes", str(256 * 2**20), "--block-size", "32",
                                        "--enable-prefix-caching", "--enable-prompt-tokens-details",
                                        *NO_PARTIAL_PREFILL, "--host", "127.0.0.1", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    children.wait_healthy("vllm", proc, url, timeout_s=900)
    return url


def write_questions(path: Path, count: int, seed: int) -> list[dict]:
    from autotts.server.tiny_task import questions

    rows = questions(count, split="hard", seed=seed)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def store_meta(store: Path) -> dict:
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(store).metadata[b"autotts"])


def store_width(store: Path) -> int:
    """Traces of the store's narrowest question: the most branches replay can offer on every question."""
    import pyarrow.parquet as pq

    counts: dict[int, int] = {}
    for q in pq.read_table(store, columns=["question_id"]).column("question_id").to_pylist():
        counts[q] = counts.get(q, 0) + 1
    return min(counts.values())


def forced_in_store(store: Path, meta: dict) -> dict:
    """Probes the collection spent forcing the final answer of a trace cut at its cap: all probe calls
    minus the recorded per-segment ones. Replay charges them nothing (the last segment reveals the answer);
    live, the branch's forced probe is charged (`tts.forced_probes`)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(store, columns=["probe_answers"]).column("probe_answers").to_pylist()
    forced = meta["usage"]["probe_calls"] - sum(len(r) for r in rows)
    return {"traces": len(rows), "forced_probes": forced, "forced_probes_per_trace": round(forced / len(rows), 4)}


def discover(store: Path, work: Path, logs: Path, timings: dict) -> Path:
    run_dir = work / "discover"
    timings["discover"] = autotts(["discover", "--explorer", "local", "--data", str(store), "--rounds", "1",
                                   "--population", "2", "--search-seeds", "2", "--betas", "0,0.5,1", "--top-k", "1",
                                   "--workers", "1", "--time-limit", "3", "--out", str(run_dir), "--no-progress"],
                                  logs / "discover.log")
    report = json.loads((run_dir / "report.json").read_text())
    paths = [Path(f["artifact"]) for f in report["finalists"] if f.get("artifact")]
    if not paths:
        raise RuntimeError(f"discovery wrote no artifact; see {run_dir / 'report.md'}")
    return paths[0] if paths[0].is_absolute() else (Path.cwd() / paths[0]).resolve()


def replay(store: Path, specs: dict[str, str], ns: argparse.Namespace, logs: Path, timings: dict) -> dict:
    import pyarrow.parquet as pq

    work = logs.parent
    args = ["eval", "--data", str(store), "--seeds", str(ns.eval_seeds), "--workers", "1", "--in-process",
            "--out", str(work / "eval.csv"), "--episodes-out", str(work / "episodes.parquet"), "--no-progress"]
    for spec in specs.values():
        args += ["--controller", spec]
    timings["eval"] = autotts(args, logs / "eval.log")
    usage = store_meta(store)["usage"]
    per_probe = usage["probe_tokens"] / max(usage["probe_calls"], 1)
    rows = pq.read_table(work / "episodes.parquet").to_pylist()
    out = {}
    for alias, spec in specs.items():
        eps = [r for r in rows if r["spec"] == spec]
        if not eps:
            raise RuntimeError(f"no eval episodes for {spec}")
        out[alias] = predicted(eps, per_probe)
    out["_probe_tokens_per_probe"] = round(per_probe, 3)
    return out


def ask(client, model: str, row: dict, i: int, max_tokens: int, ab: bool = False) -> dict:
    """Question i with seed i as `model`; in an A/B run as user i (the gateway's hash picks the arm), with the
    checker's verdict sent back through POST /v1/feedback as a user of the A/B would."""
    import httpx
    from autotts.server.tiny_task import check

    start = time.perf_counter()
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": row["question"]}],
                                       max_tokens=max_tokens, seed=i, **({"user": f"user-{i}"} if ab else {}))
    tts = r.model_extra.get("tts") or {}
    correct = check(row["question"], tts.get("answer"))
    if ab:
        httpx.post(str(client.base_url).rstrip("/") + "/feedback", json={"id": r.id, "correct": correct},
                   timeout=30).raise_for_status()
    keys = ("decode_tokens", "probe_tokens", "final_tokens", "overshoot_tokens", "tokens_spent", "branches",
            "probes", "forced_probes", "final_calls")
    return {"i": i, "arm": tts.get("arm"), "answer": tts.get("answer"), "correct": correct,
            "completion_tokens": r.usage.completion_tokens, **{k: tts.get(k) or 0 for k in keys},
            "wall_s": round(time.perf_counter() - start, 2)}


def live(gateway: str, alias: str, rows: list[dict], ns: argparse.Namespace, log: Path) -> list[dict]:
    """`rows` through the gateway as `alias` (or, with --ab, as the served model, one user each); each answered
    request is also appended to `log` (JSON lines), and with --resume the requests already there are kept
    (request i is question i with seed i)."""
    from openai import OpenAI

    client = OpenAI(base_url=gateway + "/v1", api_key="none", timeout=900, max_retries=0)
    start, done = time.perf_counter(), []
    if ns.resume and log.exists():
        done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()][:len(rows)]
    parallel = dict(kv.split("=") for kv in ns.parallel_for).get(alias, ns.parallel)
    with ThreadPoolExecutor(int(parallel)) as pool, open(log, "a") as fh:
        model, ab = (ns.served_model_name, True) if alias == "ab" else (alias, False)
        futures = [pool.submit(ask, client, model, row, i, ns.max_tokens, ab) for i, row in enumerate(rows)
                   if i >= len(done)]
        for fut in futures:
            done.append(fut.result())
            fh.write(json.dumps(done[-1]) + "\n")
            fh.flush()
            if len(done) % 10 == 0 or len(done) == len(rows):
                k = sum(d["correct"] for d in done)
                print(f"[live {alias}] {len(done)}/{len(rows)} acc {k / len(done):.3f} "
                      f"tokens {sum(d['tokens_spent'] for d in done) / len(done):.0f} "
                      f"{time.perf_counter() - start:.0f}s load {os.getloadavg()[0]:.1f}", flush=True)
    return done


def live_stats(done: list[dict], wall_s: float) -> dict:
    """Accuracy (Wilson 95%) and per-question means of the tokens and counts of answered requests."""
    k, n = sum(d["correct"] for d in done), len(done)
    stat = {key: mean_ci([float(d[key]) for d in done]) for key in
            ("tokens_spent", "decode_tokens", "probe_tokens", "final_tokens", "overshoot_tokens",
             "completion_tokens", "probes", "forced_probes", "branches")}
    return {"accuracy": {"correct": k, "n": n, "mean": round(k / n, 4), "wilson95": wilson(k, n)}, **stat,
            "wall_s": wall_s, "requests": done}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", help="model, store, discovery run and logs (default: a new temp dir)")
    p.add_argument("--engine-url", help="a running vLLM serving the chain model (default: start one)")
    p.add_argument("--served-model-name", default="chain")
    p.add_argument("--store", help="reuse this collected store (its settings must match the ones below)")
    p.add_argument("--artifact", help="reuse this controller artifact instead of a short discovery")
    p.add_argument("--collect", type=int, default=40, help="store questions (default 40)")
    p.add_argument("--collect-seed", type=int, default=10)
    p.add_argument("--fresh", type=int, default=30, help="live questions per controller (default 30)")
    p.add_argument("--fresh-seed", type=int, default=11)
    p.add_argument("--n", type=int, default=16, help="traces per store question = sc's n (default 16)")
    p.add_argument("--segment-tokens", type=int, default=32, help="Δ (default 32)")
    p.add_argument("--max-tokens", type=int, default=320, help="trace cap (default 320)")
    p.add_argument("--probe-max-tokens", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--eval-seeds", type=int, default=100, help="replay shuffle seeds per question")
    p.add_argument("--parallel", type=int, default=2, help="live requests in flight per controller (default 2)")
    p.add_argument("--parallel-for", action="append", default=[], metavar="ALIAS=N",
                   help="another number in flight for one controller (cmc's rounds wait on each other)")
    p.add_argument("--resume", action="store_true",
                   help="keep the requests already in the workdir's logs/live_<alias>.jsonl, send the rest")
    p.add_argument("--controllers", help="aliases to serve live, in this order (default sc<n>,cmc,discovered)")
    p.add_argument("--together", action="store_true",
                   help="send the controllers' requests at once instead of one controller after another")
    p.add_argument("--ab", metavar="A,B", help="instead: serve two of the controllers as A/B arms of one gateway, "
                   "--fresh questions one user each (the gateway's hash picks the arm), every answer labelled "
                   "through POST /v1/feedback, then `autotts ab report` against replay's predicted differences")
    p.add_argument("--out", help="results file (default benchmarks/results/live_replay.json, with --ab live_ab.json)")
    return p.parse_args(argv)


def predicted_difference(a: dict, b: dict) -> dict:
    """Replay's a − b in accuracy and in decode+probe tokens per question, with normal 95% intervals."""
    out = {}
    for key in ("accuracy", "decode_probe_tokens"):
        diff = a[key]["mean"] - b[key]["mean"]
        se = math.sqrt(a[key]["se"] ** 2 + b[key]["se"] ** 2)
        out[key] = {"difference": round(diff, 4), "ci95": [round(diff - Z95 * se, 4), round(diff + Z95 * se, 4)]}
    out["decode_probe_tokens"]["relative"] = round(a["decode_probe_tokens"]["mean"] / b["decode_probe_tokens"]["mean"]
                                                   - 1, 4)
    return out


def ab_result(pred: dict, arms: list[str], done: list[dict], report: dict, wall_s: float) -> dict:
    """The A/B's per-arm live numbers against replay, and the report's differences against replay's."""
    per_arm = {}
    for alias in arms:
        got = live_stats([d for d in done if d["arm"] == alias], wall_s)
        per_arm[alias] = {"predicted": pred[alias], "live": got, "comparison": compare(pred[alias], got)}
    acc, tok = report["comparison"], report["tokens_comparison"]
    expected = predicted_difference(pred[acc["a"]], pred[acc["b"]])  # the report puts the most-labelled arm first
    inside = tok["ci95"][0] <= expected["decode_probe_tokens"]["difference"] <= tok["ci95"][1]
    return {"arms": arms, "per_arm": per_arm, "ab_report": report, "replay_predicted_difference": expected,
            "accuracy_difference": {"predicted": expected["accuracy"], "reported": round(acc["difference"], 4),
                                    "reported_significant": acc["significant"], "p_value": acc["p_value"]},
            "tokens_difference": {"predicted": expected["decode_probe_tokens"], "reported": round(tok["difference"], 1),
                                  "reported_ci95": [round(x, 1) for x in tok["ci95"]],
                                  "reported_relative": round(tok["relative"], 4),
                                  "reported_significant": tok["significant"], "p_value": tok["p_value"],
                                  "predicted_inside_reported_ci95": inside}}


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    ns.out = ns.out or str(HERE / "results" / ("live_ab.json" if ns.ab else "live_replay.json"))
    work = Path(ns.workdir or tempfile.mkdtemp(prefix="autotts-live-replay-")).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children, timings = Processes(logs), {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_start = os.getloadavg()
    try:
        engine = (ns.engine_url or "").rstrip("/") or start_vllm(ns, work, children)
        sampling = ["--segment-tokens", str(ns.segment_tokens), "--max-tokens", str(ns.max_tokens),
                    "--probe-max-tokens", str(ns.probe_max_tokens), "--temperature", str(ns.temperature),
                    "--top-p", "1.0"]
        store = Path(ns.store) if ns.store else work / "store.parquet"
        if not ns.store:
            write_questions(work / "collect.jsonl", ns.collect, ns.collect_seed)
            timings["collect"] = autotts(["collect", "--engine", "vllm", "--engine-url", engine, "--model",
                                          ns.served_model_name, "--questions", str(work / "collect.jsonl"), "--n",
                                          str(ns.n), *sampling, "--concurrency", str(ns.n), "--model-name", "chain",
                                          "--dataset", "chain-hard", "--out", str(store), "--resume"],
                                         logs / "collect.log")
        meta = store_meta(store)
        for key, want in (("segment_tokens", ns.segment_tokens), ("max_tokens", ns.max_tokens),
                          ("probe_max_tokens", ns.probe_max_tokens), ("n", ns.n)):
            if meta.get(key) != want:
                raise RuntimeError(f"store {store} has {key}={meta.get(key)}, this run uses {want}")
        width = store_width(store)  # live offers what replay offers: branches_available starts at this
        artifact = Path(ns.artifact).resolve() if ns.artifact else discover(store, work, logs, timings)
        specs = {f"sc{ns.n}": f"sc:n={ns.n}", "cmc": f"cmc:beta={ns.beta}", "discovered": f"{artifact}:beta={ns.beta}"}
        arm_of = {f"sc{ns.n}": (f"sc:n={ns.n}", None), "cmc": ("cmc", ns.beta), "discovered": (str(artifact), ns.beta)}
        ab = [a.strip() for a in ns.ab.split(",")] if ns.ab else []
        if ab and (len(ab) != 2 or not set(ab) <= set(specs)):
            raise RuntimeError(f"--ab takes two of {', '.join(specs)}, got {ns.ab!r}")
        pred = replay(store, specs, ns, logs, timings)

        port = free_port()
        config = {"engine": "vllm", "engine_url": engine, "model": ns.served_model_name, "aliases": specs,
                  "allow_code": True, "controller": specs["cmc"], "segment_tokens": ns.segment_tokens,
                  "probe_max_tokens": ns.probe_max_tokens, "temperature": ns.temperature, "top_p": 1.0,
                  "default_max_tokens": ns.max_tokens, "aggregator": meta.get("aggregator"),
                  "max_branches": width, "host": "127.0.0.1", "port": port,
                  "arms": [{"name": a, "controller": arm_of[a][0], "beta": arm_of[a][1]} for a in ab]}
        (work / "gateway.json").write_text(json.dumps(config, indent=1))
        proc = children.start("gateway", [sys.executable, "-m", "autotts.cli.main", "serve", "--config",
                                               str(work / "gateway.json"), "--log-level", "warning"])
        gateway = f"http://127.0.0.1:{port}"
        children.wait_healthy("gateway", proc, gateway, timeout_s=300)
        fresh = write_questions(work / "fresh.jsonl", ns.fresh, ns.fresh_seed)
        results, load_live, lock = {}, {}, threading.Lock()

        def write_summary(parts: dict) -> None:
            summary = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       "machine": {"cpus": os.cpu_count(), "load_avg_start": [round(x, 2) for x in load_start],
                                   "load_avg_at_live_start": load_live,
                                   "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
                       "settings": {"task": "chain", "split": "hard",
                                    "collect_questions": meta.get("questions_file"),
                                    "collect_seed": ns.collect_seed, "fresh_questions": ns.fresh,
                                    "fresh_seed": ns.fresh_seed, "n": ns.n, "segment_tokens": ns.segment_tokens,
                                    "max_tokens": ns.max_tokens, "probe_max_tokens": ns.probe_max_tokens,
                                    "temperature": ns.temperature, "top_p": 1.0, "beta": ns.beta,
                                    "eval_seeds": ns.eval_seeds, "aggregator": meta.get("aggregator"),
                                    "response": "full", "artifact": artifact.name, "max_branches": width,
                                    "parallel": ns.parallel, "parallel_for": ns.parallel_for,
                                    "together": ns.together, "ab": ab or None},
                       "store": {"path_name": store.name, "questions": pred["cmc"]["questions"],
                                 "width": width, "usage": meta.get("usage"),
                                 "probe_tokens_per_probe": pred["_probe_tokens_per_probe"],
                                 **forced_in_store(store, meta)},
                       "timings_s": timings, **parts}
            Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
            Path(ns.out).write_text(json.dumps(summary, indent=1) + "\n")

        if ab:
            load_live["ab"] = [round(x, 2) for x in os.getloadavg()]
            start = time.perf_counter()
            done = live(gateway, "ab", fresh, ns, logs / "live_ab.jsonl")
            timings["live_ab"] = round(time.perf_counter() - start, 1)
            report = ab_report(gateway, ab)
            write_summary({"ab": ab_result(pred, ab, done, report, timings["live_ab"]), "complete": True})
            print(f"wrote {ns.out} (workdir {work})", flush=True)
            return 0
        chosen = [a.strip() for a in (ns.controllers or ",".join(specs)).split(",") if a.strip()]
        unknown = [a for a in chosen if a not in specs]
        if unknown:
            raise RuntimeError(f"--controllers: unknown {', '.join(unknown)}; known: {', '.join(specs)}")

        def run_one(alias: str) -> None:
            load_live[alias] = [round(x, 2) for x in os.getloadavg()]
            start = time.perf_counter()
            done = live(gateway, alias, fresh, ns, logs / f"live_{alias}.jsonl")
            got = live_stats(done, round(time.perf_counter() - start, 1))
            with lock:
                timings[f"live_{alias}"] = got["wall_s"]
                results[alias] = {"spec": specs[alias], "predicted": pred[alias], "live": got,
                                  "comparison": compare(pred[alias], got)}
                print(json.dumps(results[alias]["comparison"]), flush=True)
                write_summary({"controllers": results, "complete": len(results) == len(chosen)})

        if ns.together:
            with ThreadPoolExecutor(len(chosen)) as pool:
                for fut in [pool.submit(run_one, alias) for alias in chosen]:
                    fut.result()
        else:
            for alias in chosen:
                run_one(alias)
        print(f"wrote {ns.out} (workdir {work})", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"live_replay failed: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()


if __name__ == "__main__":
    sys.exit(main())

"""The local explorer, measured: candidates per minute with and without racing, and the must-show check.

    python benchmarks/discovery_local.py rate                     # one round twice: raced, then --no-race
    python benchmarks/discovery_local.py heldout RUN_DIR          # the run's artifact on held-out AIME25
    python benchmarks/discovery_local.py paired                   # a stage's score: paired with cmc or not
    python benchmarks/discovery_local.py recipe FILE [--heldout]  # a hand-written composition, the same check

`rate` runs `--rounds` rounds of `autotts discover --explorer local` on the AIME24 stores twice with the
same settings, once raced and once with every candidate on the full sweep: the same candidates (the
first seed recipes), so the candidates evaluated per minute of round time (the built-ins' baseline
measurement excluded) compare the two schemes directly.

`recipe FILE` is the same check for a composition written by hand (a recipe JSON of the block
library, rendered here and evaluated in process at every tabulated β), first on the search stores
(AIME24, against cmc on the same seeds) and then, with `--heldout`, once on AIME25.

`heldout` reads a finished run (`RUN_DIR/report.json`), evaluates its best artifact on the four AIME25
stores (100 seeds) at the tabulated β of cmc and compares each cmc row of ../shared/replay/expected.csv
with the artifact's points: dominated when some artifact point has at least cmc's accuracy for at most
`--token-ratio` (0.9) of its tokens. That sweep runs in this process (`--in-process`: the artifact is
rendered from the repository's block library, not written by a model); first the run's own sandboxed
held-out points are re-measured the same way and must come out identical, which shows the shortcut
changes nothing. Both write into benchmarks/results/discovery_local.json with the machine's load
average.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "replay"
MODELS = ("Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B")
BETAS = ("0.0", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0")
OUT = REPO / "benchmarks" / "results" / "discovery_local.json"


def _machine() -> dict:
    return {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "load_average": os.getloadavg()}


def _save(section: str, result: dict) -> None:
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[section] = result
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")


def _stores(data: Path, dataset: str) -> list[str]:
    return [str(data / m / f"{dataset}.json.gz") for m in MODELS]


def rate(args: argparse.Namespace) -> int:
    """Candidates per minute of round time, raced and not, same settings otherwise."""
    from autotts.discovery.config import DiscoverConfig
    from autotts.discovery.loop import run_discovery

    out = {"settings": {"rounds": args.rounds, "population": args.population, "workers": args.workers,
                        "search_seeds": args.search_seeds, "race_stages": args.race_stages, "race_eta": 3,
                        "betas": args.betas, "objective": "cmc-savings"}, "runs": {}}
    for name, stages in (("raced", args.race_stages), ("not_raced", [])):
        config = DiscoverConfig(explorer="local", data=_stores(args.data, "aime24"), rounds=args.rounds,
                                betas=args.betas, population=args.population, workers=args.workers,
                                search_seeds=args.search_seeds, race_stages=stages, objective="cmc-savings", top_k=1)
        load = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            run_discovery(config, Path(tmp) / "run", progress=False)
            rounds = [json.loads(line) for line in (Path(tmp) / "run" / "rounds.jsonl").read_text().splitlines()]
            records = [json.loads(line) for line in (Path(tmp) / "run" / "history.jsonl").read_text().splitlines()]
        minutes = sum(r["wall_s"] for r in rounds) / 60
        complete = sum(bool(r.get("complete")) for r in records)
        episodes = sum(c["episodes"] for r in records for c in r.get("cells") or [])
        out["runs"][name] = {"rounds": len(rounds), "round_minutes": round(minutes, 2), "candidates": len(records),
                             "full_sweep": complete, "episodes": episodes,
                             "candidates_per_minute": round(len(records) / minutes, 2),
                             "full_sweep_per_minute": round(complete / minutes, 2),
                             "episodes_per_second": round(episodes / minutes / 60, 1),
                             "load_average_at_start": load, "load_average_at_end": os.getloadavg()}
        print(name, out["runs"][name], flush=True)
    _save("rate", {**_machine(), **out})
    return 0


def _mean_points(cells, betas: list[float]) -> list[dict]:
    by_beta: dict[float, list[dict]] = {}
    for cell in cells:
        by_beta.setdefault(cell.beta, []).append(cell.row())
    points = []
    for beta in betas:
        rows = by_beta[beta]
        assert len(rows) == len(MODELS) and all(r["failed"] == 0 for r in rows), rows
        points.append({"beta": beta, "acc": sum(r["accuracy_pct"] for r in rows) / len(rows),
                       "tokens": sum(r["avg_tokens"] for r in rows) / len(rows),
                       "episodes": sum(r["episodes"] for r in rows)})
    return points


def heldout(args: argparse.Namespace) -> int:
    """The must-show check on the run's artifact (see the module docstring)."""
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

    report = json.loads((args.run / "report.json").read_text())
    finalist = report["finalists"][0]
    artifact = str((args.run.parent / finalist["artifact"]) if not Path(finalist["artifact"]).is_absolute()
                   else Path(finalist["artifact"]))
    if not Path(artifact).exists():
        artifact = str(args.run / "artifacts" / Path(finalist["artifact"]).name)
    stores = resolve_stores(_stores(args.data, "aime25"))
    sandboxed = finalist["heldout"]["curve"]
    seeds = report["config"]["heldout_seeds"]
    opts = EvalOptions(seeds=seeds, in_process=True)
    again = _mean_points(evaluate([f"{artifact}:beta={p['beta']:g}" for p in sandboxed], stores, opts,
                                  workers=args.workers, progress=False), [p["beta"] for p in sandboxed])
    parity = [{"beta": a["beta"], "sandboxed": [s["acc"], s["tokens"]], "in_process": [a["acc"], a["tokens"]]}
              for a, s in zip(again, sandboxed, strict=True)]
    same = all(abs(a["acc"] - s["acc"]) < 1e-6 and abs(a["tokens"] - s["tokens"]) < 1e-3
               for a, s in zip(again, sandboxed, strict=True))
    print("parity with the sandboxed held-out points:", "identical" if same else parity, flush=True)
    betas = sorted({float(b) for b in BETAS} | {round(i / 10, 1) for i in range(11)}) if args.fine else \
        [float(b) for b in BETAS]
    load, wall = os.getloadavg(), time.perf_counter()
    cells = evaluate([f"{artifact}:beta={b:g}" for b in betas], stores, EvalOptions(seeds=100, in_process=True),
                     workers=args.workers, progress=False)
    wall = time.perf_counter() - wall
    mine = _mean_points(cells, betas)
    with open(args.data / "expected.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] == "cmc" and r["dataset"] == "aime25"]
    cmc_points = []
    for b in BETAS:
        got = [r for r in rows if r["config"] == f"beta={b}"]
        cmc_points.append({"beta": float(b), "acc": sum(float(r["accuracy_pct"]) for r in got) / len(got),
                           "tokens": sum(float(r["avg_tokens_per_question"]) for r in got) / len(got)})
    table, dominated = _versus_cmc(mine, cmc_points, args.token_ratio)
    _save("heldout", {**_machine(), "load_average_at_start": load, "wall_s": round(wall, 1), "run": str(args.run.name),
                      "artifact": Path(artifact).name, "mechanisms": finalist.get("mechanisms"),
                      "run_config": report["config"], "run_rounds": len(report["rounds"]),
                      "run_evaluations": report["evaluations"], "run_racing": report.get("racing"),
                      "run_search_wall_s": report["search_wall_s"], "search_curve": finalist["search_curve"],
                      "sandboxed_heldout_curve": sandboxed, "in_process_parity": same, "parity": parity,
                      "token_ratio": args.token_ratio, "seeds": 100, "curve": mine, "vs_cmc": table,
                      "dominated": dominated, "of": len(BETAS)})
    print(f"dominates {dominated} of {len(BETAS)} cmc points (acc >=, tokens <= {args.token_ratio:g}x)")
    return 0 if dominated == len(BETAS) else 1


def _versus_cmc(mine: list[dict], cmc_points: list[dict], token_ratio: float) -> tuple[list[dict], int]:
    """Per cmc point: is it dominated (some point of `mine` at least as accurate for at most `token_ratio`
    of its tokens), and the cheapest point of `mine` that is at least as accurate."""
    table, dominated = [], 0
    for cmc in cmc_points:
        hits = [p for p in mine if p["acc"] >= cmc["acc"] and p["tokens"] <= token_ratio * cmc["tokens"]]
        cheapest_as_good = min((p for p in mine if p["acc"] >= cmc["acc"]), key=lambda p: p["tokens"], default=None)
        table.append({"cmc_beta": cmc["beta"], "cmc_acc": round(cmc["acc"], 3), "cmc_tokens": round(cmc["tokens"], 1),
                      "dominated": bool(hits), "by_beta": [p["beta"] for p in hits],
                      "cheapest_point_as_accurate": cheapest_as_good and {
                          "beta": cheapest_as_good["beta"], "acc": round(cheapest_as_good["acc"], 3),
                          "tokens_ratio": round(cheapest_as_good["tokens"] / cmc["tokens"], 3)}})
        dominated += bool(hits)
        print(table[-1], flush=True)
    return table, dominated


def recipe(args: argparse.Namespace) -> int:
    """A hand-written composition against cmc: on the search stores (same seeds), then once held out."""
    from autotts.controllers.artifact import save_artifact
    from autotts.discovery.blocks import Recipe, render
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

    composed = Recipe.from_json(json.loads(args.file.read_text()))
    betas = [float(b) for b in BETAS]
    out = {"recipe": args.file.name, "recipe_key": composed.key(), "mechanisms": composed.mechanisms(),
           "token_ratio": args.token_ratio}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = str(save_artifact(Path(tmp) / "composed", render(composed, note="A composition written by hand.")))
        for dataset, seeds in (("aime24", args.search_seeds), *((("aime25", 100),) if args.heldout else ())):
            load, wall = os.getloadavg(), time.perf_counter()
            cells = evaluate([f"{artifact}:beta={b:g}" for b in betas] + [f"cmc:beta={b:g}" for b in betas],
                             resolve_stores(_stores(args.data, dataset)), EvalOptions(seeds=seeds, in_process=True),
                             workers=args.workers, progress=False)
            half = len(cells) // 2
            mine, cmc = _mean_points(cells[:half], betas), _mean_points(cells[half:], betas)
            print(f"{dataset}, {seeds} seeds:", flush=True)
            table, dominated = _versus_cmc(mine, cmc, args.token_ratio)
            wall = round(time.perf_counter() - wall, 1)
            out[dataset] = {"seeds": seeds, "load_average_at_start": load, "wall_s": wall, "curve": mine,
                            "cmc": cmc, "vs_cmc": table, "dominated": dominated, "of": len(BETAS)}
            print(f"{dataset}: dominates {dominated} of {len(BETAS)} cmc points (acc >=, tokens <= "
                  f"{args.token_ratio:g}x)", flush=True)
    _save("hand_recipe", {**_machine(), **out})
    return 0


def paired(args: argparse.Namespace) -> int:
    """How much a stage's savings objective varies with its seeds, against cmc on all seeds or on the same ones.

    The candidate is cmc at other β (a near-cmc controller, as most candidates are); its objective on each
    disjoint block of k seeds is scored both ways, and the spread over the blocks is what racing on k seeds
    has to see through."""
    import statistics

    from autotts.discovery.objective import curve_from_cells, savings_objective
    from autotts.offline.evaluate import EvalOptions, evaluate, resolve_stores

    ref_betas, cand_betas, seeds = [0.0, 0.25, 0.5, 0.75, 1.0], [0.1, 0.35, 0.6, 0.85, 1.0], args.seeds
    stores = _stores(args.data, "aime24")
    cells = evaluate([f"cmc:beta={b:g}" for b in sorted({*ref_betas, *cand_betas})], resolve_stores(stores),
                     EvalOptions(seeds=seeds), workers=args.workers)

    def curve(betas: list[float], block: range) -> list[dict]:
        """cmc's points at `betas` on the seeds of `block` (as a racing stage's record and its baselines)."""
        points = []
        for beta in betas:
            sums = []
            for c in (c for c in cells if c.spec == f"cmc:beta={beta:g}"):
                eps = [e for e in c.episodes if e.seed in block]
                sums.append({"beta": beta, "model": c.model, "dataset": c.dataset, "episodes": len(eps),
                             "correct": sum(bool(e.correct) for e in eps), "tokens": sum(e.tokens for e in eps),
                             "tokens_sq": sum(e.tokens ** 2 for e in eps), "failed": 0})
            points.append(curve_from_cells(sums)[0])
        return points

    everything, refs = range(seeds), curve(ref_betas, range(seeds))
    out = {"machine": _machine(), "stores": [Path(s).parent.name for s in stores], "seeds": seeds,
           "candidate": "cmc at beta " + ",".join(map(str, cand_betas)), "full_objective":
           round(savings_objective(curve(cand_betas, everything), refs), 2), "blocks": {}}
    for k in args.blocks:
        blocks = [range(a, a + k) for a in range(0, seeds - k + 1, k)]
        unpaired = [savings_objective(curve(cand_betas, b), refs) for b in blocks]
        same = [savings_objective(curve(cand_betas, b), curve(ref_betas, b)) for b in blocks]
        row = {"n": len(blocks), "unpaired_mean": statistics.mean(unpaired), "unpaired_sd": statistics.stdev(unpaired),
               "paired_mean": statistics.mean(same), "paired_sd": statistics.stdev(same)}
        out["blocks"][str(k)] = {key: round(v, 2) for key, v in row.items()}
        print(f"{k} seeds ({len(blocks)} blocks): against cmc on all seeds {row['unpaired_mean']:.1f} ± "
              f"{row['unpaired_sd']:.1f}, on the same seeds {row['paired_mean']:.1f} ± {row['paired_sd']:.1f} "
              f"(all {seeds} seeds: {out['full_objective']})")
    _save("paired_scoring", out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("rate", help="candidates per minute, raced and not")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--population", type=int, default=6)
    p.add_argument("--betas", type=lambda t: [float(x) for x in t.split(",")], default=[0.0, 0.5, 1.0])
    p.add_argument("--search-seeds", type=int, default=6)
    p.add_argument("--race-stages", type=lambda t: [int(x) for x in t.split(",")], default=[1, 3])
    p.set_defaults(func=rate)
    p = sub.add_parser("heldout", help="the run's artifact against cmc on held-out AIME25, 100 seeds")
    p.add_argument("run", type=Path)
    p.add_argument("--token-ratio", type=float, default=0.9)
    p.add_argument("--fine", action="store_true", help="also every beta in steps of 0.1")
    p.set_defaults(func=heldout)
    p = sub.add_parser("recipe", help="a hand-written composition against cmc, search stores then held out")
    p.add_argument("file", type=Path, help="a recipe as JSON ({'blocks': ..., 'ends': ...})")
    p.add_argument("--search-seeds", type=int, default=20)
    p.add_argument("--heldout", action="store_true", help="then once on AIME25 (100 seeds)")
    p.add_argument("--token-ratio", type=float, default=0.9)
    p.set_defaults(func=recipe)
    p = sub.add_parser("paired", help="the spread of a stage's savings objective, paired with cmc or not")
    p.add_argument("--seeds", type=int, default=40)
    p.add_argument("--blocks", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 5])
    p.set_defaults(func=paired)
    for p in sub.choices.values():
        p.add_argument("--data", type=Path, default=SHARED)
        p.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

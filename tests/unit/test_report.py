"""`autotts report` on a small real evaluation: curves, frontier, savings, table and the trace grid.

The expected values are recomputed here from results.csv, the traces and the store itself, not taken
from the report code. tests/integration/test_ray.py covers the other half of the same issue.
"""

from __future__ import annotations

import csv
import doctest
import json
import random
import re

import pytest
from autotts.cli.main import main
from autotts.offline import report_stats
from autotts.offline.report_stats import matched_tokens

pytest.importorskip("plotly", reason="the report needs plotly (pip install 'autotts[report]')")

SPECS = ["sc:n=8", "esc:n=8,window=2", "parallel_probe:n=8,T=2,patience=2,warm_up=1", "cmc:beta=0.1",
         "cmc:beta=0.5", "cmc:beta=0.9"]


def noisy_store(path, dataset_seed, questions=6, branches=16):
    """Branches whose probes wander before settling; about 60% end on the gold answer."""
    rng = random.Random(dataset_seed)
    data = []
    for q in range(questions):
        gold = str(10 + q)
        each = []
        for _ in range(branches):
            final = gold if rng.random() < 0.6 else rng.choice([str(20 + q), "ERR", str(30 + q)])
            n = rng.randint(2, 7)
            probes = [rng.choice([gold, str(20 + q), "ERR", final]) for _ in range(n - 1)] + [final]
            each.append([probes, 500 * n + rng.randint(0, 400), final])
        data.append({"question": f"q{q}", "gold_answer": gold, "probe_freq": 500, "each_branch": each})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    golds = {}
    for ds, seed in (("bench_a", 1), ("bench_b", 2)):
        golds[ds] = [q["gold_answer"] for q in noisy_store(tmp / "data" / "Tiny" / f"{ds}.json", seed)]
    args = ["eval", "--data", str(tmp / "data"), "--seeds", "3", "--workers", "1", "--no-progress",
            "--out", str(tmp / "r.csv"), "--episodes-out", str(tmp / "ep.parquet"), "--traces-out", str(tmp / "tr")]
    for spec in SPECS:
        args += ["--controller", spec]
    assert main(args) == 0
    assert main(["report", str(tmp / "r.csv"), "--episodes", str(tmp / "ep.parquet"), "--traces", str(tmp / "tr"),
                 "--grid-limit", "3", "--out", str(tmp / "report.html")]) == 0
    with open(tmp / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return tmp, rows, golds, (tmp / "report.html").read_text()


def figures(page):
    """The data list of every Plotly.newPlot call in the page, in order."""
    decoder, out = json.JSONDecoder(), []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, _ = decoder.raw_decode(page, match.end())
        out.append(data)
    return out


def test_report_is_one_self_contained_file(evaluation):
    _, _, _, page = evaluation
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page
    assert len(re.findall(r"plotly\.js v\d", page)) == 1  # the library is inlined once


def test_curves_have_a_line_per_controller_and_points_for_baselines(evaluation):
    _, rows, _, page = evaluation
    scaling = figures(page)[0]
    by_name = {}
    for trace in scaling:
        by_name.setdefault(trace["name"], []).append(trace)
    assert set(by_name) == {"sc", "esc", "parallel_probe", "cmc", "Pareto frontier"}
    assert len(by_name["cmc"]) == 3  # the mean panel + one per dataset
    for dataset, trace in zip(("bench_a", "bench_b"), by_name["cmc"][1:], strict=True):
        cmc = sorted((r for r in rows if r["controller"] == "cmc" and r["dataset"] == dataset),
                     key=lambda r: float(r["beta"]))
        assert trace["mode"] == "lines+markers"
        assert trace["x"] == pytest.approx([float(r["avg_tokens"]) for r in cmc])
        assert trace["y"] == pytest.approx([float(r["accuracy_pct"]) for r in cmc])
        assert len(trace["error_y"]["array"]) == 3  # 95% intervals from the episodes file
    mean = by_name["cmc"][0]
    for i, beta in enumerate(("0.1", "0.5", "0.9")):
        both = [float(r["avg_tokens"]) for r in rows if r["controller"] == "cmc" and r["beta"] == beta]
        assert mean["x"][i] == pytest.approx(sum(both) / 2)
    assert all(t["mode"] == "markers" and len(t["x"]) == 1 for t in by_name["sc"])


def test_pareto_frontier_is_the_set_of_undominated_rows(evaluation):
    _, rows, _, page = evaluation
    fronts = [t for t in figures(page)[0] if t["name"] == "Pareto frontier"]
    for dataset, trace in zip(("bench_a", "bench_b"), fronts[1:], strict=True):
        pts = [(float(r["avg_tokens"]), float(r["accuracy_pct"])) for r in rows if r["dataset"] == dataset]
        undominated = sorted(p for p in pts if not any(q != p and q[0] <= p[0] and q[1] >= p[1] for q in pts))
        drawn = [v for point in zip(trace["x"], trace["y"], strict=True) for v in point]
        assert drawn == pytest.approx([v for point in undominated for v in point])
    assert "all cells (mean)" in page and "<h2 id=frontier>" in page


def test_table_has_a_row_per_cell_and_sorts(evaluation):
    _, rows, _, page = evaluation
    body = re.search(r"<table id=results class=sortable>.*?<tbody>(.*?)</tbody>", page, re.S).group(1)
    table_rows = re.findall(r"<tr>(.*?)</tr>", body)
    assert len(table_rows) == len(rows) == 12
    for tr, row in zip(table_rows, rows, strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr)
        assert cells[0] == row["controller"] and cells[4] == row["dataset"]
        assert float(re.search(r"data-v='([^']+)'", tr.split("</td>")[5]).group(1)) == float(row["accuracy_pct"])
    assert "function sortTable" in page and "onclick='sortTable(this)'" in page


def test_grid_shows_the_traced_episode_coloured_by_the_gold_answer(evaluation):
    tmp, _, golds, page = evaluation
    grids = [fig for fig in figures(page)[1:]]
    assert len(grids) == 3  # --grid-limit 3
    heading = re.search(r"Tiny / (bench_\w), question (\d+), shuffle seed (\d+)", page)
    dataset, question, seed = heading.group(1), int(heading.group(2)), int(heading.group(3))
    gold = golds[dataset][question]
    specs = re.findall(r"<h3>(.*?)</h3>", page)
    assert specs[0].startswith(("cmc", "parallel_probe"))  # controllers that prune come first
    for spec, fig in zip(specs, grids, strict=True):
        line = next(json.loads(x) for p in (tmp / "tr").glob("*.jsonl") for x in p.read_text().splitlines()
                    if json.loads(x)["spec"] == spec and json.loads(x)["dataset"] == dataset
                    and json.loads(x)["question"] == question and json.loads(x)["seed"] == seed)
        heat = next(t for t in fig if t["type"] == "heatmap")
        opened = sum(r["action"].get("n", 0) for r in line["trace"] if r["action"]["type"] == "Branch")
        assert len(heat["y"]) == opened
        revealed = sum(len(r["revealed"]) for r in line["trace"])
        shown = [(z, text) for zrow, trow in zip(heat["z"], heat["text"], strict=True)
                 for z, text in zip(zrow, trow, strict=True) if z is not None]
        assert len(shown) == revealed  # one cell per answer the controller saw
        for z, text in shown:
            assert z == (2 if text == "ERR" else 1 if text == gold else 0)
        pruned = next(t for t in fig if t["name"] == "pruned")
        assert len(pruned["y"]) == sum(r["action"]["type"] == "Prune" for r in line["trace"])


def test_missing_column_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "r.csv"
    bad.write_text("controller,beta,params,model,dataset,accuracy_pct,episodes,spec\nsc,,n=8,m,d,50,3,sc\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"autotts: error: {bad}: missing column 'avg_tokens' (expected a results.csv written by autotts eval)"
    assert not (tmp_path / "x.html").exists()


def test_matched_tokens_interpolates_in_log_tokens():
    # sc reached 20%: the curve crosses it halfway (in log10 tokens) between 10^2 and 10^4 -> 10^3
    assert matched_tokens([(100, 10.0), (10_000, 30.0)], 20.0) == pytest.approx(1000.0)
    assert matched_tokens([(5_000, 40.0), (100, 10.0)], 10.0) == 100  # the cheapest point already matches
    assert matched_tokens([(100, 10.0), (200, 15.0)], 20.0) is None


def test_docstring_examples():
    failures, attempted = doctest.testmod(report_stats)
    assert attempted > 0 and failures == 0

"""The `autotts` command end to end on tiny stores: tables, episodes, traces, errors."""

from __future__ import annotations

import csv
import json

import pytest
from autotts.cli.main import main
from autotts.controllers import save_artifact
from autotts.offline.results import RESULT_COLUMNS


def tiny_dir(tmp_path, questions=3):
    data = [{"question": f"q{i}", "gold_answer": str(i), "probe_freq": 500,
             "each_branch": [[[str(i), str(i)], 900 + 10 * b, str(i) if b % 8 else "x"] for b in range(16)]}
            for i in range(questions)]
    path = tmp_path / "data" / "TinyModel" / "tinybench.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return tmp_path / "data"


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_eval_writes_results_episodes_and_traces(tmp_path, workers, capsys):
    out, episodes, traces = tmp_path / "r.csv", tmp_path / "ep.parquet", tmp_path / "traces"
    code = main(["eval", "--data", str(tiny_dir(tmp_path)), "--controller", "sc:n=8", "--controller",
                 "cmc:beta=0.5", "--seeds", "4", "--workers", workers, "--out", str(out),
                 "--episodes-out", str(episodes), "--traces-out", str(traces), "--no-progress"])
    assert code == 0
    rows = read_rows(out)
    assert list(rows[0]) == RESULT_COLUMNS
    assert [(r["controller"], r["beta"], r["model"], r["dataset"], r["episodes"]) for r in rows] == [
        ("sc", "", "TinyModel", "tinybench", "12"), ("cmc", "0.5", "TinyModel", "tinybench", "12")]
    assert float(rows[0]["accuracy_pct"]) == 100.0 and rows[0]["params"] == "n=8"
    import pyarrow.parquet as pq

    table = pq.read_table(episodes)
    assert table.num_rows == 24 and {"question", "seed", "answer", "correct", "tokens", "branches",
                                     "probes"} <= set(table.column_names)
    sc_tokens = [t for c, t in zip(table["controller"].to_pylist(), table["tokens"].to_pylist(), strict=True)
                 if c == "sc"]
    assert abs(sum(sc_tokens) / len(sc_tokens) - float(rows[0]["avg_tokens"])) < 1e-6
    files = sorted(p.name for p in traces.iterdir())
    assert files == ["cmc_beta=0.5__TinyModel__tinybench.jsonl", "sc_n=8__TinyModel__tinybench.jsonl"]
    lines = (traces / files[0]).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["seed"] == 0 for line in lines)
    assert not list(tmp_path.glob(".*.tmp"))
    assert "TinyModel" in capsys.readouterr().out


def test_bundled_stores_are_the_default_data(tmp_path):
    out = tmp_path / "r.csv"
    assert main(["eval", "--controller", "esc", "--seeds", "1", "--workers", "1", "--out", str(out),
                 "--no-progress"]) == 0
    rows = read_rows(out)
    assert len(rows) == 8 and {r["model"] for r in rows} == {"Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B"}


@pytest.mark.parametrize("args, message", [
    (["--controller", "nope"], "unknown controller 'nope'; available: asc, cmc, esc, parallel_probe, sc"),
    (["--controller", "asc:n=many"], "parameter 'n' of controller 'asc' must be int"),
    (["--controller", "cmc:beta=2"], "must be in [0.0, 1.0], got 2.0"),
])
def test_bad_controller_specs_exit_2_with_one_line(tmp_path, capsys, args, message):
    code = main(["eval", "--data", str(tiny_dir(tmp_path)), *args, "--out", str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.csv").exists()


def test_bad_data_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "m" / "d.json"
    bad.parent.mkdir()
    bad.write_text('[{"question": "q", "each_branch": []}]')
    assert main(["eval", "--data", str(bad), "--controller", "sc", "--out", str(tmp_path / "r.csv")]) == 2
    assert f"{bad}: question 0: missing field 'gold_answer'" in capsys.readouterr().err


FLAKY = """
from autotts.controllers import Branch, Continue, Controller, Prune


class Flaky(Controller):
    name = "flaky"

    def step(self, obs):
        if obs.question_id == 1:
            raise RuntimeError("boom on question one")
        if not obs.branches:
            return [Branch(2)]
        if obs.question_id == 2:
            return [Prune(0), Continue(0)]  # illegal: continuing a pruned branch
        return [Branch(1, segments=None, probe=False)] if obs.step < 3 else [__import__(
            "autotts.controllers").controllers.Answer(obs.branches[-1].final)]
"""


def test_failing_controller_fails_its_episodes_and_the_run_finishes(tmp_path, caplog):
    artifact = save_artifact(tmp_path / "flaky", FLAKY)
    out, episodes = tmp_path / "r.csv", tmp_path / "ep.parquet"
    code = main(["eval", "--data", str(tiny_dir(tmp_path)), "--controller", str(artifact), "--controller", "sc:n=4",
                 "--seeds", "2", "--workers", "1", "--out", str(out), "--episodes-out", str(episodes),
                 "--no-progress"])
    assert code == 0
    flaky, sc = read_rows(out)
    assert (flaky["episodes"], flaky["failed"], sc["failed"]) == ("6", "4", "0")
    import pyarrow.parquet as pq

    errors = [e for e in pq.read_table(episodes)["error"].to_pylist() if e]
    assert len(errors) == 4
    assert any("RuntimeError: boom on question one" in e for e in errors)
    assert any("Continue on pruned branch 0" in e for e in errors)
    assert "flaky on TinyModel/tinybench: 4 of 6 episodes failed" in caplog.text


def test_import_writes_parquet_stores(tmp_path, capsys):
    data = tiny_dir(tmp_path)
    assert main(["import", str(data), "--out", str(tmp_path / "stores")]) == 0
    assert (tmp_path / "stores" / "TinyModel" / "tinybench.parquet").is_file()
    out = tmp_path / "r.csv"
    assert main(["eval", "--data", str(tmp_path / "stores"), "--controller", "asc", "--seeds", "3",
                 "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    json_out = tmp_path / "r2.csv"
    main(["eval", "--data", str(data), "--controller", "asc", "--seeds", "3", "--workers", "1",
          "--out", str(json_out), "--no-progress"])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("wall_s", "store")} for r in rows]  # noqa: E731
    assert strip(read_rows(out)) == strip(read_rows(json_out))


@pytest.mark.parametrize("command", [[], ["eval"], ["import"], ["controllers"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: autotts" in capsys.readouterr().out

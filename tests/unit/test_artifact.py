"""Controller artifacts: round trip, content hash, the allow-code gate, broken code."""

from __future__ import annotations

import inspect
import json

import pytest
from autotts.controllers import ArtifactError, load, read_artifact, save_artifact
from autotts.controllers.builtins import cmc
from autotts.offline import ReplayEnv, run_episode

from tests.helpers import store_in_opening_order

WIDE = """
from autotts.controllers import Branch, GeneratorController, Param, majority


class Wide(GeneratorController):
    name = "wide"
    version = "3"
    parameters = {"extra": Param(int, 0, low=0)}
    beta_range = (0.0, 1.0)
    default_beta = 0.25
    budget_knobs = ("width",)

    @classmethod
    def schedule(cls, beta):
        return {"width": 1 + round(3 * beta)}

    def run(self, obs):
        yield [Branch(self.knobs["width"] + self.params["extra"], segments=None, probe=False)]
        return majority(obs.completed_answers())
"""


@pytest.mark.parametrize("single_file", [False, True])
def test_round_trip_and_manifest(tmp_path, single_file):
    path = save_artifact(tmp_path / "wide", WIDE, scorecard={"acc": 1.0}, provenance={"explorer": "test"},
                         single_file=single_file)
    manifest, source = read_artifact(path)
    assert source == WIDE and manifest["name"] == "wide" and manifest["version"] == "3"
    assert manifest["beta"] == {"range": [0.0, 1.0], "default": 0.25}
    assert manifest["schedule"][0] == {"beta": 0.0, "width": 1} and manifest["schedule"][-1]["width"] == 4
    assert manifest["sha256"].startswith("sha256:") and manifest["provenance"] == {"explorer": "test"}
    controller = load(f"{path}:beta=1,extra=1", allow_code=True)
    assert controller.knobs == {"width": 4} and controller.params == {"extra": 1}
    store = store_in_opening_order([(["a"], 100, "a")] * 6)
    assert run_episode(controller, ReplayEnv(store), 0, 0).tokens == 500


def test_code_runs_only_when_allowed(tmp_path):
    path = save_artifact(tmp_path / "wide", WIDE)
    with pytest.raises(ArtifactError, match="operator must allow it"):
        load(str(path))


def test_edited_source_fails_the_hash_check(tmp_path):
    path = save_artifact(tmp_path / "wide", WIDE)
    (path / "controller.py").write_text(WIDE + "\nimport os\n")
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        load(str(path), allow_code=True)


def test_broken_artifacts_are_named(tmp_path):
    with pytest.raises(ArtifactError, match=r"failed to load: SyntaxError"):
        save_artifact(tmp_path / "bad", "def broken(:\n")
    with pytest.raises(ArtifactError, match="exactly one Controller subclass"):
        save_artifact(tmp_path / "none", "x = 1\n")
    (tmp_path / "j.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ArtifactError, match="field 'format'"):
        read_artifact(tmp_path / "j.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"missing manifest\.json"):
        read_artifact(tmp_path / "empty")


def test_a_builtin_exported_as_an_artifact_behaves_the_same(tmp_path):
    source = inspect.getsource(cmc).replace("from ..", "from autotts.controllers.")
    path = save_artifact(tmp_path / "cmc_copy", source, entry="ConfidenceMomentum")
    store = store_in_opening_order([(["e", "e", "7"], 1400, "7"), (["e", "9", "9"], 1300, "9")] * 20)
    for beta in (0.0, 0.5, 1.0):
        a = run_episode(load(f"cmc:beta={beta}"), ReplayEnv(store), 0, 3)
        b = run_episode(load(f"{path}:beta={beta}", allow_code=True), ReplayEnv(store), 0, 3)
        assert (a.answer, a.tokens, a.branches) == (b.answer, b.tokens, b.branches)

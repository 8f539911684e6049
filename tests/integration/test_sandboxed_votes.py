"""Artifacts vote the same in the sandbox as in process: the aggregator a request or run names, or the one
the artifact's class names (read in its jailed worker), reaches the episode machine on every path:
`autotts eval` sandboxed and in process, and the gateway serving the artifact. The store has three
branches saying 7 and four saying one half in four spellings (exact strings: 7 wins; math: one half).
The same votes for built-ins: tests/unit/test_votes.py."""

from __future__ import annotations

import json
import textwrap

import pytest
from autotts.offline.evaluate import EvalOptions, evaluate

from tests.helpers import run_app, short, store_in_opening_order

VARIANTS = [short("7"), short("1/2"), short("7"), short("0.5"), short("\\frac{1}{2}"), short("7"), short("2/4")]

SOURCE = textwrap.dedent('''
    from autotts.controllers import Answer, Branch, GeneratorController, majority


    class Wide(GeneratorController):
        """Reads seven branches to their end and answers the majority of their final answers."""

        name = "wide"
        {aggregator}

        def run(self, obs):
            yield [Branch(7, segments=None, probe=False)]
            return majority(obs.completed_answers())
''')


pytestmark = pytest.mark.usefixtures("jail_works")  # fails (never skips) without a working jail


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from autotts.sandbox.remote import save_artifact

    root = tmp_path_factory.mktemp("votes")
    store = store_in_opening_order(VARIANTS, gold="0.5")
    store.path = str(store.write_parquet(root / "tiny" / "hand.parquet"))
    plain = save_artifact(root / "controllers" / "plain", SOURCE.format(aggregator=""))
    math = save_artifact(root / "controllers" / "math", SOURCE.format(aggregator='aggregator = "math"'))
    return store, plain, math


def _answers(spec: str, store, **opts) -> list[str]:
    cells = evaluate([spec], [store], EvalOptions(seeds=3, **opts), workers=1, progress=False)
    return [e.answer for e in cells[0].episodes]


@pytest.mark.parametrize("aggregator", [None, "exact", "math"])
def test_a_plain_artifact_votes_the_same_sandboxed_and_in_process(artifacts, aggregator):
    store, plain, _ = artifacts
    sandboxed = _answers(str(plain), store, aggregator=aggregator)
    assert sandboxed == _answers(str(plain), store, aggregator=aggregator, in_process=True)
    assert set(sandboxed) == ({"1/2", "0.5", "\\frac{1}{2}", "2/4"} & set(sandboxed) if aggregator == "math"
                              else {"7"})
    assert aggregator != "math" or "7" not in sandboxed


def test_the_aggregator_an_artifact_names_is_honoured_in_the_sandbox(artifacts):
    store, _, math = artifacts
    assert json.loads((math / "manifest.json").read_text())["aggregator"] == "math"
    sandboxed = _answers(str(math), store)
    assert "7" not in sandboxed and sandboxed == _answers(str(math), store, in_process=True)
    assert set(_answers(str(math), store, aggregator="exact")) == {"7"}  # the run's choice comes first


def test_a_bad_aggregator_in_an_artifact_is_refused_on_load():
    from autotts.sandbox.remote import CandidateError, SandboxedClass

    with pytest.raises(CandidateError, match="unknown aggregator 'mode'"):
        SandboxedClass.load(SOURCE.format(aggregator='aggregator = "mode"')).close()


BETA = """
    beta_range = (0.0, 1.0)
    default_beta = 0.5
    budget_knobs = ("n",)

    @classmethod
    def schedule(cls, beta):
        return {"n": 7}
"""


@pytest.mark.parametrize(("aggregator", "accuracy"), [("", 100.0), ('aggregator = "math"', 0.0)])
def test_discovery_scores_a_candidate_with_the_aggregator_it_names(tmp_path, aggregator, accuracy):
    """Gold 7: exact strings find it, math votes the one-half class (four votes against three) past it."""
    from autotts.discovery.evaluate import EvalConfig, evaluate_source
    from autotts.sandbox import Limits

    store = store_in_opening_order(VARIANTS, gold="7")
    path = store.write_parquet(tmp_path / "tiny" / "hand.parquet")
    candidate = SOURCE.format(aggregator=aggregator + textwrap.indent(textwrap.dedent(BETA), "    "))
    record = evaluate_source(candidate, EvalConfig(stores=(str(path),), betas=(0.0, 1.0), seeds=(0, 1),
                                                   limits=Limits(cpu_s=60, wall_s=120)))
    assert record["status"] == "ok", record["errors"]
    assert [p["acc"] for p in record["curve"]] == [accuracy, accuracy]
    assert record["class"]["aggregator"] == ("math" if aggregator else None)


def test_the_gateway_serving_the_artifact_votes_as_eval_does(artifacts):
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")
    from autotts.server.app import build_app
    from autotts.server.config import GatewayConfig

    store, plain, math = artifacts
    cfg = GatewayConfig.load(env={}, overrides={"stores": [store.path], "controllers_dir": str(math.parent)})
    app = build_app(cfg)

    async def go(client):
        out = {}
        for name, tts in (("math", {}), ("plain", {}), ("plain", {"aggregator": "math"})):
            body = {"model": name, "seed": 0,
                    "messages": [{"role": "user", "content": "q?"}], "tts": tts}
            reply = (await client.post("/v1/chat/completions", json=body)).json()
            out[(name, tts.get("aggregator"))] = (reply["tts"]["answer"], reply["tts"]["aggregator"],
                                                  reply["tts"]["votes"])
        return out

    served = run_app(app, go)
    offline = {name: _answers(str(path), store)[0] for name, path in (("math", math), ("plain", plain))}
    assert served[("math", None)][:2] == (offline["math"], "math")
    assert served[("math", None)][2] == {offline["math"]: 4, "7": 3}
    assert served[("plain", None)][:2] == (offline["plain"], "exact") == ("7", "exact")
    assert served[("plain", "math")][:2] == (offline["math"], "math")

"""`autotts serve --max-branches`: the width a controller is offered live, set from the command line.

A replay store of N traces a question offers a controller N branches; the live gateway offers its
`max_branches`. Serving what such a store predicted needs the two equal (benchmarks/live_replay.py), so
the flag must reach the episode's `branches_available`, checked here through the real app on the
replay engine.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

from autotts.cli.main import build_parser
from autotts.cli.serve_cmd import gateway_config
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.config import ConfigError

from tests.helpers import run_app

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
QUESTIONS = load_store(STORE).questions


def served_branches(*flags: str) -> list[int]:
    """Branches cmc β=1 (up to 64) opened on a few questions, served with `flags`."""
    args = build_parser().parse_args(["serve", "--store", str(STORE), "--controller", "cmc:beta=1", *flags])
    app = build_app(gateway_config(args))

    async def go(c):
        got = []
        for q in range(4):
            r = await c.post("/v1/chat/completions", json={"model": "Qwen3-8B", "seed": 3,
                                                           "messages": [{"role": "user", "content": QUESTIONS[q]}]})
            assert r.status_code == 200, r.text
            got.append(r.json()["tts"]["branches"])
        return got

    return run_app(app, go)


def test_max_branches_flag_caps_what_the_controller_may_open():
    wide = served_branches()
    assert max(wide) > 6  # without the cap cmc β=1 widens past 6 on some of these questions
    capped = served_branches("--max-branches", "6")
    assert max(capped) == 6 and all(b <= 6 for b in capped)


def test_max_branches_flag_is_validated_and_documented():
    args = build_parser().parse_args(["serve", "--max-branches", "0"])
    with pytest.raises(ConfigError, match="command line: max_branches must be >= 1, got 0"):
        gateway_config(args)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-branches", "many"])
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    assert "--max-branches" in serve.format_help()

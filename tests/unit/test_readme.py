"""The README's examples run: the two set-up commands are consistent with CI, and the example
controller meets the contract and scores on a hand-made store."""

from __future__ import annotations

import re

from autotts.offline import ReplayEnv, run_episode
from autotts.offline.check import check_controller

from tests.conftest import REPO
from tests.helpers import short, store_in_opening_order

README = (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    setup = README.split("## Set-up: two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", setup, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    assert commands[1] in (REPO / ".ci" / "run").read_text()


def test_the_example_controller_works():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "class FirstToThree" in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    controller = namespace["FirstToThree"]()
    check_controller(controller)
    slow_nine = (["9", "9", "9"], 1400, "9")
    store = store_in_opening_order([short("4"), short("5"), short("4"), short("4")] + [slow_nine] * 4)
    result = run_episode(controller, ReplayEnv(store), 0, 0)
    assert (result.answer, result.branches, result.error) == ("4", 8, None)

"""The sandboxed worker's per-step limits (`controller_worker._StepClock`): never earlier than the limit, only
inside a step, again at every later tick. The real timers in a real worker: tests/unit/test_discovery_sandbox.py."""

from __future__ import annotations

import signal

import pytest
from autotts.sandbox.controller_worker import StepTimeout, _StepClock


@pytest.mark.parametrize("signum, what", [(signal.SIGPROF, "CPU time"), (signal.SIGALRM, "wall-clock time")])
def test_a_step_is_stopped_after_its_limit_and_at_every_later_tick(signum, what):
    clock = _StepClock()
    clock.in_step = True
    for _ in range(clock.TICKS):  # ten ticks of a tenth of the limit: the limit may not have passed yet
        clock.on_timer(signum, None)
    for _ in range(3):
        with pytest.raises(StepTimeout, match=what):
            clock.on_timer(signum, None)


def test_ticks_between_steps_do_nothing_and_a_new_step_starts_from_zero():
    clock = _StepClock()
    for _ in range(5 * clock.TICKS):
        clock.on_timer(signal.SIGPROF, None)
    clock.cpu = clock.wall = 0  # what `Worker.step` does before each controller step
    clock.in_step = True
    for _ in range(clock.TICKS):
        clock.on_timer(signal.SIGPROF, None)
        clock.on_timer(signal.SIGALRM, None)

"""Each built-in on tiny stores whose outcome is worked out by hand in the comments
(integration counterpart: tests/integration/test_expected_table.py)."""

from __future__ import annotations

from autotts.controllers import load
from autotts.offline import ReplayEnv, run_episode

from tests.helpers import short, store_in_opening_order


def play(spec, branches, **kw):
    store = store_in_opening_order(branches, **kw)
    result = run_episode(load(spec), ReplayEnv(store), 0, kw.get("seed", 0))
    assert result.error is None, result.error
    return result


def test_sc_reads_n_branches_and_takes_the_majority_ties_to_first_seen():
    # opened: a(600) b(700) b(800) a(900) c(1000); n=4 → votes a:2, b:2 → tie → "a" seen first
    r = play("sc:n=4", [short("a", 600), short("b", 700), short("b", 800), short("a", 900), short("c", 1000)])
    assert (r.answer, r.tokens, r.branches, r.probes) == ("a", 3000, 4, 0)


def test_asc_stops_once_confidence_beats_threshold():
    # after x, x: confidence = P(Bin(3, .5) <= 2) = 7/8 = 0.875 > 0.8 → stop with 2 reads
    r = play("asc:n=5,threshold=0.8", [short("x", 100), short("x", 200), short("y", 300)] + [short("y")] * 2)
    assert (r.answer, r.tokens, r.branches) == ("x", 300, 2)
    # 0.875 is not > 0.9: reads go on; x,x,y → P(Bin(4,.5) <= 2) = 11/16; x,x,y,x → 26/32 = .8125;
    # all 5 read → majority x
    r = play("asc:n=5,threshold=0.9", [short("x", 100), short("x", 200), short("y", 300), short("x", 400),
                                       short("y", 500)])
    assert (r.answer, r.tokens, r.branches) == ("x", 1500, 5)


def test_esc_stops_after_the_first_unanimous_window():
    branches = [short("a", 10), short("b", 20), short("c", 30), short("c", 40), short("d", 50), short("d", 60)]
    r = play("esc:n=6,window=2", branches)
    assert (r.answer, r.tokens, r.branches) == ("c", 100, 4)
    # no unanimous window: majority of all 6 (ties → first seen: c before d)
    r = play("esc:n=6,window=3", branches)
    assert (r.answer, r.tokens, r.branches) == ("c", 210, 6)


def test_parallel_probe_prunes_the_off_track_branch_and_stops_when_stable():
    x, y = (["x"] * 4, 2000, "x"), (["y"] * 4, 2000, "y")
    # open 3 (1500). step 0: probe all (3000), winner x, y off-track 1. step 1: probe all (4500), y off-track 2
    # → pruned; stable 1. step 2: probe x-branches only (5500), stable 2 = T → answer x.
    r = play("parallel_probe:n=3,T=2,patience=2,warm_up=0", [x, y, x])
    assert (r.answer, r.tokens, r.branches, r.probes) == ("x", 5500, 3, 11)


def test_parallel_probe_returns_when_every_branch_finished():
    # 2 branches of one probe each: opening (1000), step 0 finishes both at 100 tokens each → majority "m"
    r = play("parallel_probe:n=2", [short("m", 600), short("m", 600)])
    assert (r.answer, r.tokens) == ("m", 1200)


def test_cmc_beta0_finishes_short_branches_and_votes():
    # β=0 opens n_init=2 (1000 tokens). Step 0: pool empty, both continued and finished (100 each);
    # every branch finished → stop; majority of the completed pool.
    r = play("cmc:beta=0", [short("k", 600), short("k", 600), short("z", 600)])
    assert (r.answer, r.tokens, r.branches) == ("k", 1200, 2)


def test_cmc_beta_widens_and_spends_more_with_larger_beta():
    branches = [(["e", "e", "e", "e", "e", "e", "e", "7"], 4000, "7") if i % 3 else (["e"] * 6 + ["9", "9"], 4000, "9")
                for i in range(64)]
    low, high = play("cmc:beta=0", branches), play("cmc:beta=1", branches)
    assert low.branches == 4 and high.branches > low.branches and high.tokens > low.tokens
    assert high.answer == "7"


def test_cmc_opens_n_init_and_widens_to_max_branches_when_nothing_agrees():
    # every branch answers differently and runs 8 segments: the vote never settles, so cmc opens its
    # n_init knob first and keeps widening up to its max_branches knob (their published values are checked
    # end to end by the 68-row table, tests/integration/test_expected_table.py)
    branches = [([f"p{i}"] * 8, 4000, f"f{i}") for i in range(64)]
    widths = []
    for beta in (0.0, 0.2, 0.5):
        controller = load(f"cmc:beta={beta}")
        env = ReplayEnv(store_in_opening_order(branches), record_trace=True)
        r = run_episode(controller, env, 0, 0)
        assert r.error is None and r.trace[0]["action"] == {"type": "Branch", "n": controller.knobs["n_init"],
                                                           "segments": 1, "probe": True}
        assert r.branches == controller.knobs["max_branches"], beta
        widths.append(r.branches)
    assert widths == sorted(widths) and widths[0] < widths[-1]  # a larger β allows a wider search

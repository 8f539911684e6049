"""The parent's reading of a worker's batches (`decode_batch`): the same answer whatever it decoded before."""

from __future__ import annotations

import pytest
from autotts.controllers.actions import Answer, Branch, Continue, Probe, Prune
from autotts.controllers.errors import IllegalActionError
from autotts.sandbox import batches as remote
from autotts.sandbox.controller_worker import _encode


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(remote, "_DECODED", {})


def test_a_batch_decodes_to_the_actions_the_controller_returned():
    batch = [Branch(3, segments=2, probe=False), Continue(1), Continue(2, segments=None, probe=False), Probe(0),
             Prune(4), Answer("42")]
    for _ in range(2):  # decoded afresh, then from what was decoded before
        decoded = remote.decode_batch(_encode(batch))
        assert decoded == batch and [type(a) for a in decoded] == [type(a) for a in batch]


def test_a_batch_decodes_the_same_after_the_wire():
    """Actions travel as their own fields (null segments, boolean probe) through JSON, as the worker sends them."""
    from autotts.sandbox.remote import from_json, to_json

    batch = [Branch(2, segments=None, probe=False), Continue(5, segments=3), Continue(0, segments=None), Probe(1),
             Prune(2), Answer("x")]
    for _ in range(2):
        decoded = remote.decode_batch(from_json(to_json(_encode(batch))))
        assert decoded == batch and [type(a) for a in decoded] == [type(a) for a in batch]


@pytest.mark.parametrize("warm", [False, True])
def test_fields_equal_to_integers_read_as_them_whether_or_not_seen_before(warm):
    if warm:
        remote.decode_batch([[1, 3, 1, 1], []])
    assert remote.decode_batch([[1, 3.0, True, 1.0], []]) == [Continue(3, segments=1, probe=True)]


@pytest.mark.parametrize("ints", [[1, -1, 1, 1], [1, 2.5, 1, 1], [1, "3", 1, 1], [1, 3, 1, 2], [9, 0, 0, 0],
                                  [1, 3, 1], [4, 7, 0, 0]])
def test_malformed_fields_are_refused_also_after_valid_ones(ints):
    remote.decode_batch([[1, 3, 1, 1], []])
    with pytest.raises(IllegalActionError, match=r"malformed batch|not a valid action"):
        remote.decode_batch([ints, []])


def test_the_cache_of_decoded_actions_stays_bounded(monkeypatch):
    monkeypatch.setattr(remote, "_DECODED_MAX", 5)
    remote.decode_batch([[k for b in range(20) for k in (1, b, 1, 1)], []])
    assert len(remote._DECODED) == 5

"""Which offsets may be committed, and which (stream, seq) are repeats."""

from __future__ import annotations

import pytest

from faceflow.service.offsets import OffsetTracker, SeqDedup


def test_commit_waits_for_every_earlier_record_of_the_partition() -> None:
    t = OffsetTracker()
    for offset in (10, 11, 12):
        t.add("p0", offset)
    t.add("p1", 5)
    assert t.committable("p0") is None
    t.done("p0", 12)  # a DLQ record acked before a slow analysis
    assert t.committable("p0") is None
    t.done("p0", 10)
    assert t.committable("p0") == 11
    t.done("p0", 11)
    assert t.committable("p0") == 13
    assert t.in_flight("p0") == 0 and t.in_flight() == 1
    t.done("p1", 5)
    assert t.all_committable() == {"p0": 13, "p1": 6}


def test_dropped_partitions_forget_their_records_and_late_acks_are_ignored() -> None:
    t = OffsetTracker()
    t.add("p0", 1)
    t.drop(["p0"])
    t.done("p0", 1)
    assert t.committable("p0") is None
    t.add("p0", 1)  # re-assigned: the same offsets are polled again
    t.done("p0", 1)
    assert t.committable("p0") == 2


def test_offsets_must_increase() -> None:
    t = OffsetTracker()
    t.add("p0", 5)
    with pytest.raises(ValueError, match="expected > 5"):
        t.add("p0", 5)


def test_seq_dedup_is_per_stream_and_bounded() -> None:
    d = SeqDedup(max_streams=2)
    assert not d.is_repeat("a", 1)
    d.applied("a", 5)
    assert d.is_repeat("a", 5) and d.is_repeat("a", 3) and not d.is_repeat("a", 6)
    d.applied("a", 2)  # never goes back
    assert d.is_repeat("a", 4)
    d.applied("b", 1)
    d.applied("c", 1)
    assert len(d) == 2
    assert not d.is_repeat("a", 5)  # evicted: the least recently applied stream
    d.forget(["b"])
    assert not d.is_repeat("b", 1)

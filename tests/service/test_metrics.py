"""Bounded metric labels and tallies."""

from __future__ import annotations

import pytest

from faceflow.service.metrics import OTHER, BoundedCounter, LabelBudget, ServiceMetrics


def test_label_budget_keeps_the_first_values_and_folds_the_rest() -> None:
    budget = LabelBudget(3)
    assert [budget(v) for v in ("a", "b", "a", "c", "d", "e", "b")] == ["a", "b", "a", "c", OTHER, OTHER, "b"]
    assert len(budget) == 3
    assert budget.overflowed == 2


def test_bounded_counter_forgets_the_least_recently_used_keys() -> None:
    counter = BoundedCounter(2)
    counter.add("a")
    counter.add("b", 5)
    counter.add("a")
    counter.add("c")
    assert counter.get("a") == 2 and counter.get("c") == 1 and counter.get("b") == 0
    assert len(counter) == 2


@pytest.mark.parametrize("bad", [0, -1])
def test_bounds_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="expected >= 1"):
        LabelBudget(bad)
    with pytest.raises(ValueError, match="expected >= 1"):
        BoundedCounter(bad)


def test_a_flood_of_client_stream_ids_does_not_grow_the_exposition() -> None:
    metrics = ServiceMetrics("faceflow-test", label_budget=10)
    counter = metrics.meter.create_counter("faceflow.test.frames")
    for i in range(5000):
        counter.add(1, {"stream_id": metrics.stream_label(f"cam-{i}")})
    text = metrics.render()
    series = [line for line in text.splitlines() if line.startswith("faceflow_test_frames_total{")]
    assert len(series) == 11  # 10 kept + _other
    assert f'stream_id="{OTHER}"' in text
    metrics.shutdown()

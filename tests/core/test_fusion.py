"""Tests for faceflow.core.fusion: quality-weighted per-track fusion and its confidence."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from faceflow.core.fusion import SNAPSHOT_VERSION, FusedResults, TrackFusion, evidence_factor
from faceflow.models.contract import AGE_BINS, ATTRIBUTES, GENDERS, RACES, VISIBILITY_POINTS


def one_hot_ish(n: int, top: int, p: float = 0.8) -> np.ndarray:
    """A distribution over n labels with probability p on ``top``, the rest spread evenly."""
    v = np.full(n, (1.0 - p) / (n - 1))
    v[top] = p
    return v


def observation(
    *,
    age: int = 3,
    male: bool = True,
    race: int = 0,
    attr: float = 0.9,
    occ: float = 0.1,
    p: float = 0.8,
) -> dict[str, np.ndarray]:
    return {
        "age": one_hot_ish(len(AGE_BINS), age, p),
        "gender": one_hot_ish(len(GENDERS), 0 if male else 1, p),
        "race": one_hot_ish(len(RACES), race, p),
        "attributes": np.full(len(ATTRIBUTES), attr),
        "occlusion": np.full(len(VISIBILITY_POINTS), occ),
    }


def fused(fusion: TrackFusion) -> FusedResults:
    result = fusion.fused()
    assert result is not None
    return result


def test_nothing_fused_before_the_first_observation() -> None:
    fusion = TrackFusion()
    assert fusion.fused() is None
    assert fusion.evidence == 0 and fusion.weight == 0.0


def test_single_observation_is_reproduced_with_evidence_limited_confidence() -> None:
    fusion = TrackFusion()
    obs = observation(age=2, male=False, race=3)
    fusion.add(weight=1.0, **obs)
    r = fused(fusion)
    assert r.evidence == 1 and r.weight == 1.0
    assert np.allclose(r.age.probabilities, obs["age"])
    assert r.age.top_label == "20-29" and r.gender.top_label == "female" and r.race.top_label == "asian"
    assert r.gender.top_probability == pytest.approx(0.8)
    single = 1 - math.exp(-0.5)
    for dist in (r.age, r.gender, r.race):
        assert dist.confidence == pytest.approx(single)
    assert np.allclose(r.attribute_confidence, single)
    assert np.allclose(r.attributes, 0.9) and np.allclose(r.occlusion, 0.1)
    assert r.present_attributes == ATTRIBUTES


def test_a_single_low_quality_observation_gives_a_low_confidence() -> None:
    fusion = TrackFusion()
    fusion.add(weight=0.1, **observation())
    r = fused(fusion)
    assert r.gender.confidence < 0.1
    assert r.attribute_confidence.max() < 0.1


def test_many_agreeing_good_observations_give_a_high_confidence() -> None:
    fusion = TrackFusion()
    for _ in range(10):
        fusion.add(weight=0.9, **observation())
    r = fused(fusion)
    assert r.evidence == 10 and r.weight == pytest.approx(9.0)
    for dist in (r.age, r.gender, r.race):
        assert dist.confidence > 0.95
    assert r.attribute_confidence.min() > 0.95
    assert r.occlusion_confidence.min() > 0.95


def test_an_even_split_gives_no_confidence_whatever_the_weight() -> None:
    fusion = TrackFusion()
    for i in range(20):
        fusion.add(weight=1.0, **observation(male=i % 2 == 0, attr=0.9 if i % 2 else 0.1))
    r = fused(fusion)
    assert r.gender.probabilities == pytest.approx((0.5, 0.5))
    assert r.gender.confidence == pytest.approx(0.0, abs=1e-12)
    assert r.attribute_confidence.max() == pytest.approx(0.0, abs=1e-12)
    # the unanimous heads keep a high confidence
    assert r.age.confidence > 0.99


def test_confidence_is_evidence_times_vote_margin() -> None:
    fusion = TrackFusion(evidence_scale=2.0)
    weights_and_votes = [(1.0, 0), (0.5, 0), (0.5, 1), (0.25, 2)]
    for w, top in weights_and_votes:
        fusion.add(weight=w, **{**observation(), "age": one_hot_ish(len(AGE_BINS), top, 0.9)})
    r = fused(fusion)
    total = 2.25
    margin = (1.5 - 0.5) / total
    assert r.age.top_label == AGE_BINS[0]
    assert r.age.confidence == pytest.approx(margin * (1 - math.exp(-total / 2.0)))


def test_binary_confidence_uses_the_share_agreeing_with_the_fused_decision() -> None:
    fusion = TrackFusion(evidence_scale=1.0)
    fusion.add(weight=3.0, **observation(attr=0.8))
    fusion.add(weight=1.0, **observation(attr=0.3))
    r = fused(fusion)
    assert r.attributes[0] == pytest.approx((3 * 0.8 + 0.3) / 4)
    assert r.attribute_confidence[0] == pytest.approx((2 * 0.75 - 1) * (1 - math.exp(-4.0)))


def test_fused_probabilities_are_the_weighted_mean() -> None:
    rng = np.random.default_rng(11)
    fusion = TrackFusion()
    weights, ages, attrs = [], [], []
    for _ in range(500):
        w = float(rng.uniform(0.01, 1.0))
        age = rng.dirichlet(np.ones(len(AGE_BINS)))
        attr = rng.uniform(0, 1, len(ATTRIBUTES))
        obs = {**observation(), "age": age, "attributes": attr}
        fusion.add(weight=w, **obs)
        weights.append(w)
        ages.append(age)
        attrs.append(attr)
    r = fused(fusion)
    assert np.allclose(r.age.probabilities, np.average(ages, axis=0, weights=weights), atol=1e-12)
    assert np.allclose(r.attributes, np.average(attrs, axis=0, weights=weights), atol=1e-12)
    assert math.fsum(r.age.probabilities) == pytest.approx(1.0, abs=1e-12)
    assert r.weight == pytest.approx(sum(weights))


def test_a_heavy_observation_outweighs_light_ones() -> None:
    fusion = TrackFusion()
    for _ in range(3):
        fusion.add(weight=0.05, **observation(male=False))
    fusion.add(weight=1.0, **observation(male=True))
    assert fused(fusion).gender.top_label == "male"


def test_unnormalised_distributions_are_renormalised_within_tolerance() -> None:
    fusion = TrackFusion()
    obs = observation()
    obs["gender"] = np.array([0.7, 0.3005])
    fusion.add(weight=1.0, **obs)
    assert math.fsum(fused(fusion).gender.probabilities) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("weight", "change", "error", "match"),
    [
        (0.0, {}, ValueError, "weight: expected a finite float > 0"),
        (-1.0, {}, ValueError, "weight"),
        (math.nan, {}, ValueError, "weight"),
        (math.inf, {}, ValueError, "weight"),
        (True, {}, TypeError, "weight: expected a float"),
        ("1", {}, TypeError, "weight"),
        (1.0, {"age": np.ones(7) / 7}, ValueError, r"age: expected shape \[8\]"),
        (1.0, {"gender": [0.5, 0.2]}, ValueError, "gender: expected probabilities summing to 1"),
        (1.0, {"race": [1.2, -0.2, 0, 0, 0]}, ValueError, r"race: expected probabilities in \[0, 1\]"),
        (1.0, {"attributes": np.full(40, math.nan)}, ValueError, "attributes: expected finite"),
        (1.0, {"attributes": np.zeros(39)}, ValueError, r"attributes: expected shape \[40\]"),
        (1.0, {"occlusion": np.full(29, 1.5)}, ValueError, "occlusion"),
        (1.0, {"occlusion": np.zeros((29, 1))}, ValueError, r"occlusion: expected shape \[29\]"),
        (1.0, {"age": "young"}, TypeError, "age: expected a numeric array"),
    ],
)
def test_add_rejects_bad_input_and_leaves_the_state_alone(
    weight: object, change: dict[str, object], error: type[Exception], match: str
) -> None:
    fusion = TrackFusion()
    fusion.add(weight=0.5, **observation())
    before = fusion.snapshot()
    with pytest.raises(error, match=match):
        fusion.add(weight=weight, **{**observation(), **change})  # type: ignore[arg-type]
    assert fusion.snapshot() == before


@pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, True, "2"])
def test_evidence_scale_is_validated(scale: object) -> None:
    with pytest.raises(ValueError, match="evidence_scale"):
        TrackFusion(evidence_scale=scale)  # type: ignore[arg-type]


def test_evidence_factor_saturates() -> None:
    assert evidence_factor(0.0, 2.0) == 0.0
    assert evidence_factor(2.0, 2.0) == pytest.approx(1 - math.exp(-1))
    assert evidence_factor(100.0, 2.0) == pytest.approx(1.0)


def test_fused_results_are_read_only_and_json_serialisable() -> None:
    fusion = TrackFusion()
    fusion.add(weight=0.7, **observation())
    r = fused(fusion)
    with pytest.raises(ValueError, match="read-only"):
        r.attributes[0] = 0.0
    doc = json.loads(json.dumps(r.to_dict()))
    assert doc["gender"]["top_label"] == "male"
    assert set(doc["attributes"]) == set(ATTRIBUTES)
    assert doc["evidence"] == 1


def test_snapshot_round_trips_through_json_and_continues_exactly() -> None:
    rng = np.random.default_rng(5)
    observations = []
    for _ in range(30):
        obs = {
            "age": rng.dirichlet(np.ones(8)),
            "gender": rng.dirichlet(np.ones(2)),
            "race": rng.dirichlet(np.ones(5)),
            "attributes": rng.uniform(0, 1, 40),
            "occlusion": rng.uniform(0, 1, 29),
        }
        observations.append((float(rng.uniform(0.05, 1.0)), obs))
    original = TrackFusion(evidence_scale=3.0)
    for w, obs in observations[:15]:
        original.add(weight=w, **obs)
    snap = original.snapshot()
    assert snap["version"] == SNAPSHOT_VERSION
    restored = TrackFusion.restore(json.loads(json.dumps(snap)))
    assert restored.snapshot() == snap
    for w, obs in observations[15:]:
        original.add(weight=w, **obs)
        restored.add(weight=w, **obs)
    a, b = fused(original), fused(restored)
    assert a.to_dict() == b.to_dict()
    assert restored.snapshot() == original.snapshot()


def test_an_empty_fusion_round_trips() -> None:
    restored = TrackFusion.restore(TrackFusion().snapshot())
    assert restored.fused() is None and restored.evidence == 0


def _snapshot() -> dict[str, Any]:
    fusion = TrackFusion()
    fusion.add(weight=1.0, **observation())
    return fusion.snapshot()


def _with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    snap = json.loads(json.dumps(_snapshot()))
    node = snap
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return snap


@pytest.mark.parametrize(
    ("snapshot", "match"),
    [
        ([], "snapshot: expected a mapping"),
        (_with(("version",), 99), "snapshot.version: expected 1"),
        (_with(("evidence_scale",), KeyError), "expected key 'evidence_scale'"),
        (_with(("evidence_scale",), -1.0), "evidence_scale"),
        (_with(("evidence",), -1), "snapshot.evidence"),
        (_with(("evidence",), 1.5), "snapshot.evidence"),
        (_with(("weight",), "1"), "snapshot.weight"),
        (_with(("weight",), 0.0), "expected 0 exactly when evidence is 0"),
        (_with(("heads",), {}), "snapshot.heads: expected keys"),
        (_with(("heads", "age"), [1, 2]), "snapshot.heads.age: expected a mapping"),
        (_with(("heads", "age", "mean"), [0.5] * 7), r"snapshot.heads.age.mean: expected 8"),
        (_with(("heads", "gender", "votes"), [2.0, 0.0]), "snapshot.heads.gender.votes"),
        (_with(("heads", "race", "mean"), ["a"] * 5), "expected a list of numbers"),
    ],
)
def test_restore_rejects_malformed_snapshots(snapshot: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrackFusion.restore(snapshot)  # type: ignore[arg-type]

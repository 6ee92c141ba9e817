"""Tests for faceflow.core.association."""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
import pytest

from faceflow.core.association import embedding_distances, match

BIG = 9.0  # a disallowed pair's cost: must be ignored


def brute_force(cost: np.ndarray, allowed: np.ndarray) -> float:
    """Least summed (cost - 1) over every matching of allowed pairs (small matrices only)."""
    n, m = cost.shape
    best = 0.0
    pairs = [(i, j) for i in range(n) for j in range(m) if allowed[i, j]]
    for k in range(1, min(n, m) + 1):
        for combo in itertools.combinations(pairs, k):
            rows = {i for i, _ in combo}
            cols = {j for _, j in combo}
            if len(rows) == k and len(cols) == k:
                best = min(best, sum(cost[i, j] - 1.0 for i, j in combo))
    return best


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        ([[0.1, BIG], [BIG, 0.2]], [(0, 0), (1, 1)]),
        ([[0.9, 0.1], [0.1, 0.9]], [(0, 1), (1, 0)]),  # a swap is cheaper
        ([[BIG, BIG], [BIG, BIG]], []),
        ([[0.5, 0.5, 0.5]], [(0, 0)]),  # ties: the first column
        ([[0.1], [0.1]], [(0, 0)]),  # ties: the first row
        # Not "as many matches as possible": row 1 could match col 0 only if row 0 took col 1 at 0.9;
        # 0.1 alone (+1 for leaving row 1 and col 1 unmatched) beats 0.9 + 0.8.
        ([[0.1, 0.9], [0.8, BIG]], [(0, 0)]),
        # ... but when the exchange is cheap, both are matched.
        ([[0.1, 0.2], [0.15, BIG]], [(0, 1), (1, 0)]),
        (np.zeros((0, 3)), []),
        (np.zeros((2, 0)), []),
    ],
)
def test_match_cases(cost: Any, expected: list[tuple[int, int]]) -> None:
    c = np.asarray(cost, dtype=np.float64)
    allowed = c < 1.0
    rows, cols = match(c, allowed)
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == expected


@pytest.mark.parametrize("seed", range(12))
def test_match_is_optimal_on_random_matrices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 6, 2)
    cost = rng.uniform(0, 0.99, (n, m))
    allowed = rng.random((n, m)) < 0.5
    rows, cols = match(cost, allowed)
    assert allowed[rows, cols].all()
    assert len(set(rows.tolist())) == rows.size and len(set(cols.tolist())) == cols.size
    assert list(rows) == sorted(rows)
    assert float((cost[rows, cols] - 1.0).sum()) == pytest.approx(brute_force(cost, allowed))


def test_match_rejects_mismatched_shapes() -> None:
    with pytest.raises(
        ValueError, match=re.escape("cost, allowed: expected the same [N, M] shape, got (2, 3) and (3, 2)")
    ):
        match(np.zeros((2, 3)), np.zeros((3, 2), np.bool_))


@pytest.mark.parametrize(
    ("a", "b", "error"),
    [
        (np.zeros((3, 8)), np.ones((2, 8)), None),
        (np.zeros((0, 8)), np.ones((2, 8)), None),
        (np.zeros((3, 8)), np.ones((2, 7)), ValueError),
        (np.zeros(8), np.ones((2, 8)), ValueError),
    ],
)
def test_embedding_distances(a: np.ndarray, b: np.ndarray, error: type[Exception] | None) -> None:
    if error is not None:
        with pytest.raises(error):
            embedding_distances(a, b)
        return
    rng = np.random.default_rng(0)
    a = a + rng.standard_normal(a.shape)
    b = b + rng.standard_normal(b.shape)
    expected = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    np.testing.assert_allclose(embedding_distances(a, b), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embedding_distances(b, b).diagonal(), 0.0, atol=3e-3)

"""Assignment of observations to tracks: embedding distances and the gated optimal matching.

:func:`match` solves the linear assignment the tracker needs: given a cost in ``[0, 1)`` for
every allowed (row, column) pair, it returns the matching that minimises the summed
``cost - 1`` of its pairs. Leaving a row and a column unmatched costs as much as a pair at the
worst possible cost, so an allowed pair is always matched unless matching it forces a worse
total elsewhere (ByteTrack's ``lapjv`` with a cost limit, in one rectangular solve). Rows and
columns whose only candidate is each other are matched directly and the rest go to one
Hungarian solve (``scipy.optimize.linear_sum_assignment``), which keeps the cost about linear
in the number of faces when faces are apart.

Pure: numpy and scipy only, no BLAS threads. Deterministic: the same inputs give the same result.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped, unused-ignore]

logger = logging.getLogger(__name__)

__all__ = ["embedding_distances", "match"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def embedding_distances(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Euclidean distances between the rows of ``a [N, D]`` and ``b [M, D]``: ``[N, M]`` float64."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"a, b: expected [N, D] and [M, D] with the same D, got {x.shape} and {y.shape}")
    # The cross term with einsum in float32, not with a matmul: OpenBLAS runs products of this size
    # (40 x 128 x 200) on several threads, which on a busy 2-core machine made whole tracker
    # updates 7x slower. float32 is what the embedder produces; the error is ~1e-6 in distance.
    cross = np.einsum("ik,jk->ij", x.astype(np.float32), y.astype(np.float32)).astype(np.float64)
    d2 = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * cross
    out: FloatArray = np.sqrt(np.maximum(d2, 0.0))
    return out


def match(cost: FloatArray, allowed: BoolArray) -> tuple[IntArray, IntArray]:
    """Rows and columns of the optimal matching of allowed pairs, sorted by row.

    Args:
        cost: ``[N, M]``; the entries of allowed pairs must be below 1 (others are ignored).
        allowed: ``[N, M]`` bool, the pairs that may be matched.
    """
    if cost.shape != allowed.shape or cost.ndim != 2:
        raise ValueError(
            f"cost, allowed: expected the same [N, M] shape, got {cost.shape} and {allowed.shape}"
        )
    if cost.size == 0 or not allowed.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    row_deg = allowed.sum(axis=1)
    col_deg = allowed.sum(axis=0)
    single = allowed & (row_deg == 1)[:, None] & (col_deg == 1)[None, :]
    rows, cols = np.nonzero(single)
    rest_r = np.flatnonzero((row_deg > 0) & ~single.any(axis=1))
    rest_c = np.flatnonzero((col_deg > 0) & ~single.any(axis=0))
    if rest_r.size and rest_c.size:
        sub_allowed = allowed[np.ix_(rest_r, rest_c)]
        sub = np.where(sub_allowed, cost[np.ix_(rest_r, rest_c)] - 1.0, 0.0)
        rr, cc = linear_sum_assignment(sub)
        keep = sub_allowed[rr, cc]
        rows = np.concatenate([rows, rest_r[rr[keep]]])
        cols = np.concatenate([cols, rest_c[cc[keep]]])
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)

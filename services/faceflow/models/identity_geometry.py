"""Identity alignment geometry and descriptor distance: pure numpy (dlib itself is in ``identity.py``).

dlib aligns a chip with a similarity fit of *its own* 5 points to a fixed template (below), and its
5 points are not CenterFace's: dlib's order (checked on ``skimage.data.astronaut()``) is 0
image-right eye outer corner, 1 image-right eye inner corner, 2 image-left eye outer corner, 3
image-left eye inner corner, 4 bottom of the nose. See :mod:`faceflow.models.identity` for the two
alignments built on these helpers.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DLIB_5POINT_TEMPLATE",
    "embedding_distance",
    "keypoint_square",
    "square_around",
    "template_points_from_eyes",
]

#: dlib's 5-point chip template (``get_face_chip_details``), unit square, dlib's point order.
DLIB_5POINT_TEMPLATE: Final[npt.NDArray[np.float64]] = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316577),
    ]
)


#: Side of the predictor's square / (eye-midpoint to mouth-midpoint distance): calibrated so the
#: square matches dlib's frontal detector box on astronaut (90 px for 40 px).
_KEYPOINT_SQUARE_FACTOR: Final[float] = 2.2


def embedding_distance(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Euclidean distance of two descriptors (same person typically < 0.4, different > 0.6)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def square_around(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Squares ``[F,4]`` with the boxes' centres and side = mean of each box's width and height."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    c = (b[:, :2] + b[:, 2:]) / 2
    half = ((b[:, 2] - b[:, 0]) + (b[:, 3] - b[:, 1])) / 4
    return np.concatenate([c - half[:, None], c + half[:, None]], axis=1)


def keypoint_square(keypoints5: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Squares ``[F,4]`` around faces estimated from CenterFace keypoints alone.

    Centre: midway between the eye midpoint and the mouth midpoint; side: 2.2 x their distance.
    """
    k = np.asarray(keypoints5, np.float64).reshape(-1, 5, 2)
    eyes = (k[:, 0] + k[:, 1]) / 2
    mouth = (k[:, 3] + k[:, 4]) / 2
    c = (eyes + mouth) / 2
    half = _KEYPOINT_SQUARE_FACTOR * np.linalg.norm(mouth - eyes, axis=1) / 2
    return np.concatenate([c - half[:, None], c + half[:, None]], axis=1)


def template_points_from_eyes(keypoints5: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """dlib-order 5 points ``[F,5,2]`` placed by mapping the template's eye centres onto the
    detector's eye centres (keypoint 0 = image-left eye, 1 = image-right eye)."""
    k = np.asarray(keypoints5, np.float64).reshape(-1, 5, 2)
    t = DLIB_5POINT_TEMPLATE[:, 0] + 1j * DLIB_5POINT_TEMPLATE[:, 1]
    t_left = (t[2] + t[3]) / 2
    t_right = (t[0] + t[1]) / 2
    d_left = k[:, 0, 0] + 1j * k[:, 0, 1]
    d_right = k[:, 1, 0] + 1j * k[:, 1, 1]
    a = (d_right - d_left) / (t_right - t_left)  # rotation + scale as one complex factor
    b = d_left - a * t_left
    z = a[:, None] * t[None, :] + b[:, None]
    return np.stack([z.real, z.imag], axis=2)

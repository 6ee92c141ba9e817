"""Validation helpers for ingest settings, raising :class:`~faceflow.ingest.errors.IngestConfigError`."""

from __future__ import annotations

import math

from faceflow.ingest.errors import IngestConfigError
from faceflow.service.config import check_int as _check_int


def check_number(name: str, value: object, *, minimum: float, inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a finite real number above ``minimum``.

    Raises:
        IngestConfigError: "``name``: expected a finite number >= minimum, got ``value``".
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value < minimum if inclusive else value <= minimum)
    ):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise IngestConfigError(f"{name}: expected a finite number {bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """:func:`faceflow.service.config.check_int`, raising IngestConfigError."""
    return _check_int(name, value, minimum=minimum, error=IngestConfigError)

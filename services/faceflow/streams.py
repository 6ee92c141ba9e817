"""The stream id rule, shared by every service that receives a stream id from outside.

A stream id becomes a Kafka message key, part of a file name (``annotated-<id>.mp4``) and a metric
label, so it is restricted to a small, safe alphabet: 1 to 64 characters of ``[A-Za-z0-9._-]``,
starting with a letter or digit (which rules out ``.``, ``..`` and names that look like options).
"""

from __future__ import annotations

import re

from faceflow.errors import InvalidArgument

STREAM_ID_MAX_LEN = 64
STREAM_ID_RULE = "1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit"
_STREAM_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidStreamId(InvalidArgument):
    """A stream id breaks the naming rule (see :func:`validate_stream_id`); ``INVALID_ARGUMENT``."""


def validate_stream_id(stream_id: object) -> str:
    """Return ``stream_id`` unchanged if it follows the rule, else raise :class:`InvalidStreamId`.

    Raises:
        InvalidStreamId: (a ``ValueError``) with the rule and the offending value in the message.
    """
    if not isinstance(stream_id, str):
        raise InvalidStreamId(
            f"stream id: expected a str of {STREAM_ID_RULE}, got {type(stream_id).__name__}"
        )
    if _STREAM_ID_RE.fullmatch(stream_id) is None:
        shown = stream_id if len(stream_id) <= 80 else stream_id[:77] + "..."
        raise InvalidStreamId(
            f"stream id: expected {STREAM_ID_RULE}, got {shown!r} ({len(stream_id)} characters)"
        )
    return stream_id


def is_valid_stream_id(stream_id: object) -> bool:
    """True when ``stream_id`` follows the rule (for filters that skip rather than refuse)."""
    return isinstance(stream_id, str) and _STREAM_ID_RE.fullmatch(stream_id) is not None

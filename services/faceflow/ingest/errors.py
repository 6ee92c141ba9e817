"""Exceptions raised by the ingest service, all under :class:`IngestError`.

``IngestError`` subclasses :class:`faceflow.errors.FaceflowError`, the package's one exception root
(STYLE.md #7). Source errors say which source failed and why, so a caller can decide between
retrying (:class:`SourceDisconnected`) and giving up (:class:`SourceNotFound`,
:class:`SourceUndecodable`).
"""

from __future__ import annotations

import re

from faceflow.errors import ConfigError, FaceflowError, InvalidArgument, NotFound, PermissionDenied

#: The longest reason text a client is sent (a rejection detail, a source's last error).
MAX_CLIENT_TEXT = 500
_OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")


def client_text(text: str, limit: int = MAX_CLIENT_TEXT) -> str:
    """``text`` with object reprs (``<_io.BytesIO object at 0x7f...>``) removed, cut to ``limit``
    characters (the cut marked with ``...``)."""
    cleaned = _OBJECT_REPR.sub("", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


class IngestError(FaceflowError):
    """Root of every exception the ingest service raises on purpose."""


class IngestConfigError(IngestError, ConfigError, InvalidArgument):
    """An ingest setting (target fps, queue size, JPEG quality, ...) is invalid.

    At start-up it stops the service; in a request (``StartSource``) it is ``INVALID_ARGUMENT``.
    """


class SourceNotAllowed(IngestError, PermissionDenied):  # noqa: N818
    """A source requested over gRPC is outside the source policy (``PERMISSION_DENIED``).

    Raised from the text of the URI alone, or after resolving symbolic links of a path inside an
    allowed folder; the message never says whether a path outside the allowed folders exists.
    """


class InvalidFrame(IngestError, ValueError):  # noqa: N818
    """A frame's fields do not have the expected types, shapes or ranges."""


class FrameTooLarge(IngestError):  # noqa: N818
    """A frame cannot be JPEG-encoded under the byte limit even after downsizing."""


class QueueClosed(IngestError):  # noqa: N818
    """The frame queue was closed and has no items left."""


class SourceError(IngestError):
    """A frame source cannot be opened or read.

    Attributes:
        uri: the source's path or URL, as given.
        reason: the underlying cause in words (FFmpeg's message where there is one).
    """

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"{uri}: {reason}")
        self.uri = uri
        self.reason = reason


class SourceNotFound(SourceError, NotFound):  # noqa: N818
    """The file, folder or URL does not exist (missing path, HTTP 404, unknown RTSP path)."""


class SourceUndecodable(SourceError):  # noqa: N818
    """The source exists but holds no decodable video: empty, corrupt, unsupported codec or scheme."""


class SourceDisconnected(SourceError):  # noqa: N818
    """A live source is unreachable or dropped mid-stream; reconnecting may help."""

"""Source URIs without opening them: the URL schemes ingest pulls, and passwords kept out of logs.

Pure (standard library only), so that configuration code never imports PyAV.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: URL schemes a pulled source may use (FFmpeg opens them); anything else is a path.
URL_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})


def url_scheme(uri: str) -> str | None:
    """The lower-cased scheme of a URL (``scheme://...``), or None for a path."""
    return uri.split("://", 1)[0].lower() if "://" in uri else None


def is_supported_scheme(scheme: str) -> bool:
    """``file`` or one of :data:`URL_SCHEMES`."""
    return scheme == "file" or scheme in URL_SCHEMES


def redact_uri(uri: str) -> str:
    """Return ``uri`` with the password of its user-info part replaced by ``***``."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # a malformed IPv6 literal: keep only the scheme
        return uri.split("://", 1)[0] + "://***"
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]  # host and port as written (a bad port is kept, not parsed)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))

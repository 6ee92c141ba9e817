"""Source URIs without opening them: the URL schemes ingest pulls, and passwords kept out of logs.

Pure (standard library only), so that configuration code never imports PyAV.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

#: URL schemes a pulled source may use (FFmpeg opens them); anything else is a path.
URL_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})


def redact_uri(uri: str) -> str:
    """Return ``uri`` with the password of its user-info part replaced by ``***``."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))

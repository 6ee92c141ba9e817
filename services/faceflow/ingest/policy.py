"""The source policy: which sources a client may start over gRPC (``StartSource``).

Sources given by the operator (``--source``, ``--sources-file``, ``FACEFLOW_INGEST_SOURCES``,
``FACEFLOW_INGEST_SOURCES_FILE``) are the operator's choice and are not checked here. A source that a
client requests must pass :meth:`SourcePolicy.check`, built from three settings of
:class:`~faceflow.ingest.config.IngestConfig` (comma-separated; ``none`` means an empty list):

* ``allow_schemes`` (``FACEFLOW_INGEST_ALLOW_SCHEMES``, default ``rtsp,rtsps,http,https``): the URL
  schemes a client may use. ``file://`` URLs are paths and follow ``allow_file_roots`` instead.
* ``allow_hosts`` (``FACEFLOW_INGEST_ALLOW_HOSTS``, default none): the hosts a URL may name. An
  entry is an exact host name (``cam1.example.com``), a wildcard ``*.example.com`` (any name that
  ends in ``.example.com``, not ``example.com`` itself), an IP address, or a network in CIDR form
  (``10.20.0.0/16``, ``fd00::/8``). Ports are not restricted.
* ``allow_file_roots`` (``FACEFLOW_INGEST_ALLOW_FILE_ROOTS``, default ``.``, the working folder of
  the ingest process): the folders whose files and subfolders a client may name. A relative root
  is taken against the working folder when the policy is built.

How a host is matched: an IP literal (``127.0.0.1``, ``[::1]``; an IPv4-mapped IPv6 address as its
IPv4 address) must lie in a listed address or network. A name must be listed by name or by a
wildcard; networks never match names, and names are never resolved here. Resolving at check time
would not protect anything: FFmpeg resolves the name again when it connects (and on every
reconnect), so a name whose DNS answers change between the check and the connection (DNS
rebinding) would pass a check of its first answer. Listing a name therefore means trusting its
DNS. Numeric host forms that C resolvers read as IPv4 addresses but that are not dotted quads
(``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``) and IPv6 zone ids are refused.

How a path is matched, in this order: the text is normalised without touching the file system
(:func:`os.path.abspath`, which removes ``.`` and ``..``), and must lie inside an allowed root;
otherwise the source is refused and nothing about the path's existence is revealed. Only then are
symbolic links resolved (:func:`os.path.realpath`); the result must lie inside a resolved root, so
a link inside a root that points outside it is refused too. :meth:`SourcePolicy.check` returns the
resolved path: that is what the source opens, and an absolute path is never read by FFmpeg as a
protocol prefix (``concat:``, ``pipe:``).

Errors: a URI that cannot be parsed (control characters, a bad port, a malformed IPv6 literal, more
than one ``@``, a backslash in the authority) raises
:class:`~faceflow.ingest.errors.IngestConfigError` (``INVALID_ARGUMENT``); a well-formed URI that
the policy does not allow raises :class:`~faceflow.ingest.errors.SourceNotAllowed`
(``PERMISSION_DENIED``), with a message that names the setting an operator would change.

What the policy does not cover: an allowed HTTP server can redirect, and an HLS playlist can name
segments on other hosts; FFmpeg follows both. Allow only hosts you trust with that.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from faceflow.ingest.errors import IngestConfigError, SourceNotAllowed
from faceflow.ingest.uris import URL_SCHEMES, is_supported_scheme, redact_uri, url_scheme

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The variables an operator sets to allow more (named in refusal messages).
SCHEMES_ENV = "FACEFLOW_INGEST_ALLOW_SCHEMES"
HOSTS_ENV = "FACEFLOW_INGEST_ALLOW_HOSTS"
FILE_ROOTS_ENV = "FACEFLOW_INGEST_ALLOW_FILE_ROOTS"
#: The defaults of the three settings (see the module docstring).
DEFAULT_SCHEMES = "rtsp,rtsps,http,https"
DEFAULT_HOSTS = "none"
DEFAULT_FILE_ROOTS = "."
#: The longest URI checked (Linux's PATH_MAX).
MAX_URI_CHARS = 4096
#: How much of a client's URI a message repeats.
_SHOWN_CHARS = 120

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def _shown(text: str) -> str:
    """``text`` cut to a length fit for a message, as a quoted string."""
    return repr(text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "...")


def _split_list(setting: str, text: object) -> list[str]:
    if not isinstance(text, str):
        raise IngestConfigError(f"{setting}: expected a comma-separated string, got {type(text).__name__}")
    items = [item.strip() for item in text.split(",")]
    if [i.lower() for i in items] == ["none"]:
        return []
    if any(not item for item in items):
        raise IngestConfigError(
            f"{setting}: expected comma-separated entries (or 'none'), got an empty entry in {_shown(text)}"
        )
    return items


def _is_host_name(name: str) -> bool:
    """Whether ``name`` (lower case, no trailing dot) is a DNS name whose last label is not numeric."""
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
        and not _reads_as_ipv4(name)
    )


def _reads_as_ipv4(host: str) -> bool:
    """Whether a C resolver would read ``host`` as an IPv4 address (``127.1``, ``0x7f000001``)."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(path: str, root: str) -> bool:
    """Whether the absolute, normalised ``path`` is ``root`` or lies below it."""
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path.startswith(prefix)


@dataclass(frozen=True, kw_only=True)
class SourcePolicy:
    """What a client may start over gRPC; see the module docstring. Validated on construction.

    Attributes:
        schemes: URL schemes allowed (lower case, each one of :data:`~faceflow.ingest.uris.URL_SCHEMES`).
        host_names: exact host names (lower case, no trailing dot).
        host_suffixes: wildcard suffixes with their leading dot (``.example.com`` for ``*.example.com``).
        networks: allowed addresses and networks (an address is a /32 or /128 network).
        file_roots: allowed folders, absolute and normalised.
    """

    schemes: frozenset[str] = frozenset()
    host_names: frozenset[str] = frozenset()
    host_suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    file_roots: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.schemes, frozenset):
            raise IngestConfigError(f"schemes: expected a frozenset, got {type(self.schemes).__name__}")
        for scheme in sorted(self.schemes):
            if scheme == "file":
                raise IngestConfigError(
                    "schemes: expected URL schemes other than 'file' (file:// URLs follow the file roots), "
                    "got 'file'"
                )
            if scheme not in URL_SCHEMES:
                raise IngestConfigError(
                    f"schemes: expected some of {sorted(URL_SCHEMES)}, got {_shown(scheme)}"
                )
        if not isinstance(self.host_names, frozenset):
            raise IngestConfigError(f"host_names: expected a frozenset, got {type(self.host_names).__name__}")
        for name in sorted(self.host_names):
            if not _is_host_name(name):
                raise IngestConfigError(
                    f"host_names: expected lower-case DNS names (not numeric), got {_shown(name)}"
                )
        for suffix in self.host_suffixes:
            if not suffix.startswith(".") or not _is_host_name(suffix[1:]):
                raise IngestConfigError(
                    f"host_suffixes: expected '.' and a lower-case DNS name, got {_shown(suffix)}"
                )
        for network in self.networks:
            if not isinstance(network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                raise IngestConfigError(f"networks: expected IP networks, got {type(network).__name__}")
        for root in self.file_roots:
            if not isinstance(root, str):
                raise IngestConfigError(f"file_roots: expected str paths, got {type(root).__name__}")
            if not os.path.isabs(root) or os.path.normpath(root) != root:
                raise IngestConfigError(
                    f"file_roots: expected absolute, normalised paths, got {_shown(root)}"
                )

    @classmethod
    def parse(
        cls,
        *,
        schemes: str = DEFAULT_SCHEMES,
        hosts: str = DEFAULT_HOSTS,
        file_roots: str = DEFAULT_FILE_ROOTS,
    ) -> SourcePolicy:
        """The policy of the three comma-separated settings (``none``: an empty list).

        Raises:
            IngestConfigError: "allow_<setting>: expected X, got Y" for an entry that does not parse.
        """
        allowed_schemes: set[str] = set()
        for scheme in _split_list("allow_schemes", schemes):
            lower = scheme.lower()
            if lower == "file" or lower not in URL_SCHEMES:
                raise IngestConfigError(
                    f"allow_schemes: expected some of {sorted(URL_SCHEMES)} (file:// URLs follow "
                    f"allow_file_roots), got {_shown(scheme)}"
                )
            allowed_schemes.add(lower)
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for entry in _split_list("allow_hosts", hosts):
            lower = entry.lower()
            if lower.startswith("*."):
                if not _is_host_name(lower[2:]):
                    raise IngestConfigError(
                        f"allow_hosts: expected '*.' and a DNS name for a wildcard, got {_shown(entry)}"
                    )
                suffixes.append(lower[1:])
                continue
            network = _parse_network(lower)
            if network is not None:
                networks.append(network)
                continue
            name = lower[:-1] if lower.endswith(".") else lower
            if not _is_host_name(name):
                raise IngestConfigError(
                    "allow_hosts: expected a host name, *.suffix, an IP address or a CIDR network "
                    f"(IPv4 as four decimal numbers), got {_shown(entry)}"
                )
            names.add(name)
        roots: list[str] = []
        for root in _split_list("allow_file_roots", file_roots):
            if _CONTROL.search(root):
                raise IngestConfigError(f"allow_file_roots: expected folder paths, got {_shown(root)}")
            absolute = os.path.abspath(os.path.expanduser(root))
            if absolute not in roots:
                roots.append(absolute)
        return cls(
            schemes=frozenset(allowed_schemes),
            host_names=frozenset(names),
            host_suffixes=tuple(suffixes),
            networks=tuple(networks),
            file_roots=tuple(roots),
        )

    def describe(self) -> str:
        """The policy in one line, for the start-up log."""
        hosts = (
            sorted(self.host_names) + [f"*{s}" for s in self.host_suffixes] + [str(n) for n in self.networks]
        )
        return (
            f"schemes={','.join(sorted(self.schemes)) or 'none'} hosts={','.join(hosts) or 'none'} "
            f"file_roots={','.join(self.file_roots) or 'none'}"
        )

    # -- checking -----------------------------------------------------------------------------
    def check(self, uri: str) -> str:
        """Return what to open for ``uri`` if the policy allows it: a URL as given, or the path with
        every symbolic link resolved.

        Raises:
            IngestConfigError: ``uri`` cannot be parsed (see the module docstring).
            SourceNotAllowed: the policy does not allow it.
        """
        if not isinstance(uri, str):
            raise IngestConfigError(f"uri: expected a str, got {type(uri).__name__}")
        if not uri.strip():
            raise IngestConfigError(f"uri: expected a file path, folder or URL, got {_shown(uri)}")
        if len(uri) > MAX_URI_CHARS:
            raise IngestConfigError(f"uri: expected at most {MAX_URI_CHARS} characters, got {len(uri)}")
        if _CONTROL.search(uri):
            raise IngestConfigError(f"uri: expected no control characters, got {_shown(uri)}")
        scheme = url_scheme(uri)
        if scheme is None:
            return self._check_path(uri, uri)
        if not is_supported_scheme(scheme):
            raise IngestConfigError(
                f"uri: expected a path or a URL with one of {sorted(URL_SCHEMES)}, got {_shown(uri)}"
            )
        if scheme == "file":
            return self._check_path(_file_url_path(_split(uri), uri), uri)
        if _URL_FORBIDDEN.search(uri):
            raise IngestConfigError(
                f"uri: expected a URL without spaces (percent-encode them), got {_shown(redact_uri(uri))}"
            )
        return self._check_url(_split(uri), scheme, uri)

    def _check_url(self, parts: SplitResult, scheme: str, uri: str) -> str:
        shown = _shown(redact_uri(uri))
        if scheme not in self.schemes:
            allowed = ", ".join(sorted(self.schemes)) or "none"
            raise SourceNotAllowed(
                f"source {shown}: {scheme}:// URLs are not allowed for sources started over gRPC "
                f"(allowed: {allowed}); the operator allows schemes with {SCHEMES_ENV}"
            )
        authority = parts.netloc
        if "\\" in authority or authority.count("@") > 1:
            raise IngestConfigError(f"uri: expected at most one '@' and no '\\' before the host, got {shown}")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise IngestConfigError(f"uri: expected a port in 0..65535 after the host, got {shown}") from None
        host = parts.hostname or ""
        if host.endswith("."):
            host = host[:-1]
        if not host:
            raise IngestConfigError(f"uri: expected a host in the URL, got {shown}")
        address = _ip_literal(host)
        if address is not None:
            if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
                raise SourceNotAllowed(f"source {shown}: IPv6 zone ids are not allowed")
            reached = _unmapped(address)
            if any(reached in network for network in self.networks):
                return uri
            raise SourceNotAllowed(
                f"source {shown}: address {reached} is not in the networks allowed for sources started "
                f"over gRPC; the operator allows hosts and networks with {HOSTS_ENV}"
            )
        if not _is_host_name(host):
            raise SourceNotAllowed(
                f"source {shown}: host {_shown(host)} is neither a DNS name nor an IP address in standard "
                "form (write IPv4 addresses as four decimal numbers)"
            )
        if host in self.host_names or any(host.endswith(suffix) for suffix in self.host_suffixes):
            return uri
        raise SourceNotAllowed(
            f"source {shown}: host {host} is not allowed for sources started over gRPC; the operator "
            f"allows hosts with {HOSTS_ENV}"
        )

    def _check_path(self, path: str, uri: str) -> str:
        shown = _shown(uri)
        lexical = os.path.abspath(path)  # normalises ".." and "." without touching the file system
        roots = [*self.file_roots]
        if not any(_inside(lexical, root) for root in roots):
            resolved_roots = [os.path.realpath(root) for root in roots]
            if not any(_inside(lexical, root) for root in resolved_roots):
                raise SourceNotAllowed(
                    f"source {shown}: outside the folders allowed for sources started over gRPC; the "
                    f"operator allows folders with {FILE_ROOTS_ENV}"
                )
        resolved = os.path.realpath(lexical)
        if not any(_inside(resolved, os.path.realpath(root)) for root in roots):
            raise SourceNotAllowed(
                f"source {shown}: leads outside the folders allowed for sources started over gRPC "
                f"(through a symbolic link); the operator allows folders with {FILE_ROOTS_ENV}"
            )
        return resolved


def _parse_network(entry: str) -> Network | None:
    """``entry`` as an IP address or CIDR network, or None when it is neither.

    Raises:
        IngestConfigError: a CIDR network with host bits set, or a bad prefix length.
    """
    text = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
    if "/" not in text:
        address = _ip_literal(text)
        if address is None or (isinstance(address, ipaddress.IPv6Address) and address.scope_id):
            return None
        return ipaddress.ip_network(_unmapped(address))
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise IngestConfigError(
            f"allow_hosts: expected a CIDR network such as 10.0.0.0/8 or fd00::/8, "
            f"got {_shown(entry)} ({exc})"
        ) from None


def _split(uri: str) -> SplitResult:
    try:
        return urlsplit(uri)
    except ValueError as exc:
        raise IngestConfigError(
            f"uri: expected a well-formed URL, got {_shown(redact_uri(uri))} ({exc})"
        ) from None


def _file_url_path(parts: SplitResult, uri: str) -> str:
    """The path of a ``file://`` URL, read as :func:`~faceflow.ingest.sources.open_source` reads it."""
    if parts.netloc.lower() not in ("", "localhost"):
        raise IngestConfigError(f"uri: expected file:///path or file://localhost/path, got {_shown(uri)}")
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise IngestConfigError(f"uri: expected a file:// URL without '?' or '#', got {_shown(uri)}")
    if not parts.path:
        raise IngestConfigError(f"uri: expected a path after file://, got {_shown(uri)}")
    return parts.path

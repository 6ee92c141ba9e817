"""How the replicas of one deployable reach each other: the address each advertises, the transport
(plaintext or the mesh's TLS) they dial each other with, and the metadata of a forwarded call.

Shared by the aggregator (a call for another replica's stream goes to its owner,
:mod:`faceflow.aggregator.routing`) and ingest (ListSources asks the other replicas for the sources
they run, :mod:`faceflow.ingest.assignments`). A forwarded call carries its caller's metadata, so
the receiving replica checks the caller's token (and its scope) as the first one did; it never
carries a token of the replica's own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from faceflow.service.security import (
    ClientSecurity,
    ServerSecurity,
    client_security_from_env,
    server_security_from_env,
)

#: Metadata on a forwarded call (its value: the forwarding replica's address). Its receiver answers
#: from its own state and never forwards it again.
FORWARDED = "faceflow-forwarded"
#: A forwarded answer may be as large as the owner may send (ListTracks pages of 1000 tracks).
MAX_RECEIVE_BYTES = 16 * 1024 * 1024
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - compared with, never bound
#: Caller metadata that is the transport's, not the caller's: never copied onto a forwarded call.
_NOT_FORWARDED_PREFIXES = ("grpc-", ":")
_NOT_FORWARDED = frozenset({"user-agent", "content-type", "te", FORWARDED})


# -- the advertised address ---------------------------------------------------------------------


def advertised_address(configured: str, *, grpc_host: str, port: int, env: Mapping[str, str]) -> str:
    """The ``host:port`` other replicas reach this one on.

    ``configured`` (``advertise_address``) as given when it has a port; a host alone gets the bound
    ``port``. Unset: the host is ``$POD_IP`` (Kubernetes' downward API), else ``grpc_host`` when it
    is a specific address, else this machine's host name. An IPv6 host is bracketed.
    """
    configured = configured.strip()
    if configured:
        host, sep, given = configured.rpartition(":")
        if sep and given.isdigit() and (not host.count(":") or host.endswith("]")):
            return configured
        host = configured
    else:
        host = (
            env.get("POD_IP", "").strip()
            or (grpc_host if grpc_host not in _WILDCARDS else "")
            or socket.gethostname()
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


# -- how replicas reach each other ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PeerTransport:
    """How this replica connects to the others: plaintext, or TLS with these roots (None: the
    system's), this client certificate (for mTLS) and this name to verify. Never a token: a
    forwarded call carries its caller's."""

    tls: bool = False
    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    roots_from: str = ""

    def describe(self) -> str:
        if not self.tls:
            return "plaintext"
        parts = [f"TLS, verified with {self.roots_from or 'the system CAs'}"]
        if self.server_name:
            parts.append(f"as {self.server_name}")
        if self.certificate_chain is not None:
            parts.append("with a client certificate")
        return " ".join(parts)

    def channel(self, address: str) -> grpc.Channel:
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if not self.tls:
            return grpc.insecure_channel(address, options=options)
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )
        return grpc.secure_channel(address, credentials, options=options)


def peer_transport(server: object, client: ClientSecurity | None) -> PeerTransport:
    """How to reach the other replicas, given this replica's server security (``server``, a
    :class:`~faceflow.service.security.ServerSecurity`) and the client variables (``client``).

    A plaintext server means plaintext peers. A TLS server means TLS peers (every replica has one
    configuration): roots from ``FACEFLOW_TLS_CA_FILE``, else the mTLS client CA (the mesh's CA),
    else the system's; a client certificate from ``FACEFLOW_TLS_CLIENT_CERT_FILE``, else, when the
    servers require one, the replica's own (its certificate then needs ``client auth`` as well);
    ``FACEFLOW_TLS_SERVER_NAME`` as the name to verify (replicas are reached by address).
    """
    if not isinstance(server, ServerSecurity) or not server.tls:
        return PeerTransport()
    client = client or ClientSecurity()
    roots, roots_from = client.root_certificates, "FACEFLOW_TLS_CA_FILE"
    if roots is None and server.client_ca is not None:
        roots, roots_from = server.client_ca, "FACEFLOW_TLS_CLIENT_CA_FILE"
    if roots is None:
        roots_from = ""
    chain, key = client.certificate_chain, client.private_key
    if chain is None and server.mutual_tls:
        chain, key = server.certificate_chain, server.private_key
    return PeerTransport(
        tls=True,
        root_certificates=roots,
        certificate_chain=chain,
        private_key=key,
        server_name=client.server_name,
        roots_from=roots_from,
    )


def peer_transport_from_env(env: Mapping[str, str] | None = None) -> PeerTransport:
    """:func:`peer_transport` of the mesh-wide variables (the client ones are read only with TLS).

    Raises:
        ConfigError: a variable names a file that cannot be read or is not what it should be.
    """
    env = os.environ if env is None else env
    server = server_security_from_env(env)
    return peer_transport(server, client_security_from_env(env) if server.tls else None)


# -- metadata --------------------------------------------------------------------------------------


def is_forwarded(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """True when the call was forwarded by another replica (the loop guard)."""
    return any(key == FORWARDED for key, _ in metadata or ())


def forward_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None, *, origin: str
) -> list[tuple[str, str | bytes]]:
    """The caller's metadata (its ``authorization`` and ``traceparent`` among it), without the
    transport's own keys, plus ``faceflow-forwarded: <origin>``."""
    out = [
        (key, value)
        for key, value in metadata or ()
        if key not in _NOT_FORWARDED and not key.startswith(_NOT_FORWARDED_PREFIXES)
    ]
    out.append((FORWARDED, origin or "?"))
    return out

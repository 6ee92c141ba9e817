"""Transport security and authentication for faceflow's gRPC servers and clients.

Server side (:class:`ServerSecurity`, read by :func:`server_security_from_env`), from mesh-wide
environment variables that every service reads:

* ``FACEFLOW_TLS_CERT_FILE`` and ``FACEFLOW_TLS_KEY_FILE``: the server's PEM certificate chain and
  its unencrypted private key. Both or neither; with them the server speaks only TLS.
* ``FACEFLOW_TLS_CLIENT_CA_FILE``: PEM CA certificates; with it every client must present a
  certificate signed by one of them (mTLS).
* ``FACEFLOW_AUTH_TOKEN_FILE``: a file holding the bearer token every call must carry as
  ``authorization: Bearer <token>`` metadata (one trailing newline is stripped). A call without
  it, or with another scheme, is refused with :class:`~faceflow.errors.Unauthenticated`; a call
  with another token with :class:`~faceflow.errors.PermissionDenied`. Health
  (``/grpc.health.v1.Health/*``) is exempt; reflection is not. This token has every scope.
* ``FACEFLOW_AUTH_TOKENS_FILE``: scoped tokens, one client each, as lines
  ``<scope> <subject> <token>`` (:mod:`faceflow.service.scopes`). A ``read`` token may call the
  methods ``METHOD_SCOPES`` marks read (``Subscribe``, ``Get*``, ``List*``, reflection); an ``admin``
  token may call every method. Too little scope is :class:`~faceflow.errors.PermissionDenied`
  (``method ForgetIdentity needs scope admin; this token has read``). It may be set together with
  ``FACEFLOW_AUTH_TOKEN_FILE`` (whose token then acts as admin with subject
  :data:`SHARED_SUBJECT`), to move clients to their own tokens one at a time.

A servicer learns who called with :func:`caller_subject` (the subject of the token the call was
admitted with), e.g. to record who changed the gallery.

Client side (:class:`ClientSecurity`, read by :func:`client_security_from_env`; used by
:func:`channel_for`), for faceflow's own gRPC clients:

* ``FACEFLOW_TLS_CA_FILE``: PEM CA certificates that verify the server; TLS is on when it is set
  (or when a client certificate is, which then verifies against the system's roots).
* ``FACEFLOW_TLS_CLIENT_CERT_FILE`` and ``FACEFLOW_TLS_CLIENT_KEY_FILE``: the client certificate
  and key presented to an mTLS server. Both or neither.
* ``FACEFLOW_TLS_SERVER_NAME``: the name to verify in the server's certificate instead of the
  target's host (a port-forwarded ``127.0.0.1``).
* ``FACEFLOW_AUTH_TOKEN_FILE``: the token, sent as call credentials over TLS or as metadata added
  by an interceptor without TLS.

Files are read once, when the value is built; every problem is a
:class:`~faceflow.errors.ConfigError` of one line naming the variable and the path. Nothing here
ever puts a token, a password or a private key into a message, a log or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from faceflow.errors import ConfigError, PermissionDenied, RequestError, Unauthenticated
from faceflow.secrets import (  # noqa: F401 - env_setting and the readers are re-exported from here
    CERTIFICATE_MARKER,
    KEY_MARKERS,
    env_setting,
    read_certificates,
    read_file_bytes,
    read_key_pair,
    read_secret_file,
)

# The tokens' side lives in scopes.py; names marked F401 are re-exported from here, where they were.
from faceflow.service.scopes import (
    EXEMPT_METHOD_PREFIXES,  # noqa: F401
    METHOD_SCOPES,  # noqa: F401
    MIN_TOKEN_CHARS,  # noqa: F401
    SHARED_SUBJECT,
    SUBJECT_PATTERN,  # noqa: F401
    Scope,
    TokenGrant,
    check_token,
    is_exempt,
    method_scopes,
    parse_tokens,  # noqa: F401
    read_tokens_file,
)

TLS_CERT_FILE_ENV = "FACEFLOW_TLS_CERT_FILE"
TLS_KEY_FILE_ENV = "FACEFLOW_TLS_KEY_FILE"
TLS_CLIENT_CA_FILE_ENV = "FACEFLOW_TLS_CLIENT_CA_FILE"
AUTH_TOKEN_FILE_ENV = "FACEFLOW_AUTH_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
AUTH_TOKENS_FILE_ENV = "FACEFLOW_AUTH_TOKENS_FILE"
TLS_CA_FILE_ENV = "FACEFLOW_TLS_CA_FILE"
TLS_CLIENT_CERT_FILE_ENV = "FACEFLOW_TLS_CLIENT_CERT_FILE"
TLS_CLIENT_KEY_FILE_ENV = "FACEFLOW_TLS_CLIENT_KEY_FILE"
TLS_SERVER_NAME_ENV = "FACEFLOW_TLS_SERVER_NAME"

#: The metadata key and scheme of the bearer token (RFC 6750 over gRPC metadata).
AUTHORIZATION = "authorization"
BEARER = "Bearer"

# -- reading files named by variables ---------------------------------------------------------------


def _token_of(env: Mapping[str, str]) -> str | None:
    """The shared bearer token from ``FACEFLOW_AUTH_TOKEN_FILE`` (servers check it, clients send it)."""
    path = env_setting(env, AUTH_TOKEN_FILE_ENV)
    return None if path is None else read_secret_file(AUTH_TOKEN_FILE_ENV, Path(path).expanduser())


def _pair_of(env: Mapping[str, str], first: str, second: str) -> tuple[Path, Path] | None:
    a, b = env_setting(env, first), env_setting(env, second)
    if a is None and b is None:
        return None
    if a is None or b is None:
        given = first if a is not None else second
        raise ConfigError(f"expected both {first} and {second}, or neither, got only {given}")
    return Path(a).expanduser(), Path(b).expanduser()


def _check_pem(name: str, value: bytes | None, markers: Sequence[bytes], what: str) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        raise ConfigError(f"{name}: expected PEM bytes, got {type(value).__name__}")
    if not any(m in value for m in markers):
        raise ConfigError(f"{name}: expected {what} in PEM, got {len(value)} bytes without one")


# -- server side ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerSecurity:
    """How a gRPC server listens (plaintext or TLS, optionally requiring client certificates) and
    whether calls need a bearer token.

    ``certificate_chain`` and ``private_key`` (PEM) turn TLS on, both or neither;
    ``client_ca`` (PEM) requires and verifies client certificates and needs TLS; ``token`` is the
    bearer token with every scope; ``tokens`` are scoped tokens (:class:`TokenGrant`). With either,
    every call but health must carry one of them. Secrets stay out of ``repr``.
    """

    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    client_ca: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tokens: Sequence[TokenGrant] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        _check_pem("certificate_chain", self.certificate_chain, (CERTIFICATE_MARKER,), "a certificate")
        _check_pem("private_key", self.private_key, KEY_MARKERS, "a private key")
        _check_pem("client_ca", self.client_ca, (CERTIFICATE_MARKER,), "a CA certificate")
        if (self.certificate_chain is None) != (self.private_key is None):
            given = "certificate_chain" if self.certificate_chain is not None else "private_key"
            raise ConfigError(
                f"expected both certificate_chain and private_key, or neither, got only {given}"
            )
        if self.client_ca is not None and self.certificate_chain is None:
            raise ConfigError(
                "client_ca: expected a server certificate and key as well (client certificates are "
                "verified only over TLS), got neither"
            )
        check_token(self.token)
        object.__setattr__(self, "tokens", tuple(self.tokens))
        if not all(isinstance(grant, TokenGrant) for grant in self.tokens):
            raise ConfigError("tokens: expected TokenGrant values, got another type")
        if len({grant.token for grant in self.grants}) != len(self.grants):
            raise ConfigError("tokens: expected each token once (with token), got one twice (not shown)")

    @property
    def tls(self) -> bool:
        return self.certificate_chain is not None

    @property
    def mutual_tls(self) -> bool:
        return self.client_ca is not None

    @property
    def grants(self) -> tuple[TokenGrant, ...]:
        """Every accepted token: ``token`` (admin, :data:`SHARED_SUBJECT`) first, then ``tokens``."""
        shared = () if self.token is None else (TokenGrant(Scope.ADMIN, SHARED_SUBJECT, self.token),)
        return (*shared, *self.tokens)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSecurity:
        """Read the ``FACEFLOW_TLS_*``, ``FACEFLOW_AUTH_TOKEN_FILE`` and ``FACEFLOW_AUTH_TOKENS_FILE``
        variables (see the module docstring); none set means plaintext without a token.

        Raises:
            ConfigError: a variable without its pair, a file that cannot be read or is not what it
                should be.
        """
        pair = _pair_of(env, TLS_CERT_FILE_ENV, TLS_KEY_FILE_ENV)
        client_ca_path = env_setting(env, TLS_CLIENT_CA_FILE_ENV)
        if client_ca_path is not None and pair is None:
            raise ConfigError(
                f"{TLS_CLIENT_CA_FILE_ENV} is set: expected {TLS_CERT_FILE_ENV} and {TLS_KEY_FILE_ENV} "
                "as well (client certificates are verified only over TLS), got neither"
            )
        chain = key = client_ca = None
        if pair is not None:
            chain, key = read_key_pair(TLS_CERT_FILE_ENV, pair[0], TLS_KEY_FILE_ENV, pair[1])
        if client_ca_path is not None:
            client_ca = read_certificates(TLS_CLIENT_CA_FILE_ENV, Path(client_ca_path).expanduser())
        token = _token_of(env)
        tokens_path = env_setting(env, AUTH_TOKENS_FILE_ENV)
        tokens: tuple[TokenGrant, ...] = ()
        if tokens_path is not None:
            taken = {} if token is None else {token: AUTH_TOKEN_FILE_ENV}
            tokens = read_tokens_file(AUTH_TOKENS_FILE_ENV, Path(tokens_path).expanduser(), taken=taken)
        return cls(certificate_chain=chain, private_key=key, client_ca=client_ca, token=token, tokens=tokens)

    def interceptors(self, services: Sequence[str] = ()) -> Sequence[grpc.ServerInterceptor]:
        """The bearer-token check, when a token is configured (none otherwise).

        ``services`` are the full names of the services the server serves; with scoped tokens,
        every one of their methods must have a scope (:func:`method_scopes`). A method outside
        them needs admin (fail closed).

        Raises:
            ServiceStartError: scoped tokens are configured and a method has no scope.
        """
        if not self.grants:
            return ()
        scopes = method_scopes(services) if self.tokens else {}
        return (BearerTokenCheck(grants=self.grants, scopes=scopes),)

    def bind(self, server: grpc.Server, address: str) -> int:
        """Add a listening port on ``address`` (TLS when configured); return it (0: not bound)."""
        if self.certificate_chain is None or self.private_key is None:
            return int(server.add_insecure_port(address))
        credentials = grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )
        return int(server.add_secure_port(address, credentials))

    def describe(self) -> str:
        """What is on, for the start-up log: e.g. ``TLS (client certificates required), bearer token``."""
        transport = (
            "plaintext"
            if not self.tls
            else "TLS (client certificates required)"
            if self.mutual_tls
            else "TLS"
        )
        auth = ["bearer token"] if self.token is not None else []
        if self.tokens:
            admin = sum(1 for grant in self.tokens if grant.scope is Scope.ADMIN)
            auth.append(f"scoped tokens ({admin} admin, {len(self.tokens) - admin} read)")
        return f"{transport}, {' + '.join(auth) or 'no token'}"


def server_security_from_env(env: Mapping[str, str]) -> ServerSecurity:
    """:meth:`ServerSecurity.from_env` (what the gRPC server scaffold calls when given none)."""
    return ServerSecurity.from_env(env)


def bearer_credential(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of a call's one ``authorization: Bearer <token>`` metadata entry.

    Raises:
        Unauthenticated: no ``authorization`` entry, several, or not ``Bearer <token>``.
    """
    values = [value for key, value in metadata or () if key == AUTHORIZATION]
    if not values:
        raise Unauthenticated(f"no {AUTHORIZATION} metadata: expected '{AUTHORIZATION}: {BEARER} <token>'")
    if len(values) > 1:
        raise Unauthenticated(f"expected one {AUTHORIZATION} metadata entry, got {len(values)}")
    raw = values[0]
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    scheme, _, credential = text.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != BEARER.lower() or not credential:
        raise Unauthenticated(
            f"{AUTHORIZATION} metadata: expected '{BEARER} <token>', got another form (not shown)"
        )
    return credential


def check_bearer(metadata: Sequence[tuple[str, str | bytes]] | None, token: str) -> None:
    """Check a call's ``authorization`` metadata against ``token``, in constant time.

    Raises:
        Unauthenticated: no ``authorization`` entry, several, or not ``Bearer <token>``.
        PermissionDenied: a bearer token that is not ``token``.
    """
    credential = bearer_credential(metadata)
    if not hmac.compare_digest(credential.encode("utf-8", "replace"), token.encode("ascii")):
        raise PermissionDenied("the bearer token is not the one this service accepts")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


class BearerTokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call but health without an accepted ``authorization: Bearer`` token, or with a
    token whose scope the method's does not allow.

    Args:
        token: a token with every scope (subject :data:`SHARED_SUBJECT`).
        grants: scoped tokens (at least one of ``token`` and ``grants``).
        scopes: the scope each method needs, by full path (:func:`method_scopes`); a method not
            in it needs admin.

    A refused call gets a handler of the same kind (unary or streaming, same serializers) whose
    behavior raises the :class:`~faceflow.errors.RequestError`; the scaffold's error mapping, which
    wraps this interceptor, turns it into its status code, logs and counts it. An admitted call's
    handler records its subject for :func:`caller_subject`. Tokens are compared as SHA-256 digests,
    each in constant time, all of them on every call (no early exit says which one matched).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        grants: Sequence[TokenGrant] = (),
        scopes: Mapping[str, Scope] | None = None,
    ) -> None:
        check_token(token)
        shared = () if token is None else (TokenGrant(Scope.ADMIN, SHARED_SUBJECT, token),)
        accepted = (*shared, *grants)
        if not accepted:
            raise ConfigError("token: expected a bearer token or scoped grants, got neither")
        self._grants = tuple((_digest(grant.token), grant) for grant in accepted)
        self._scopes = dict(scopes or {})
        self._unknown = (
            "the bearer token is not the one this service accepts"
            if len(accepted) == 1
            else "the bearer token is not one this service accepts"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tokens={len(self._grants)}, token=***)"

    def grant_of(self, metadata: Sequence[tuple[str, str | bytes]] | None, method: str) -> TokenGrant:
        """The grant that admits a call of ``method`` with this ``authorization`` metadata.

        Raises:
            Unauthenticated: no ``Bearer`` token (see :func:`bearer_credential`).
            PermissionDenied: a token this service does not accept, or one whose scope is too small.
        """
        digest = _digest(bearer_credential(metadata))
        found: TokenGrant | None = None
        for known, grant in self._grants:
            if hmac.compare_digest(digest, known) and found is None:
                found = grant
        if found is None:
            raise PermissionDenied(self._unknown)
        needed = self._scopes.get(method, Scope.ADMIN)
        if not found.scope.allows(needed):
            raise PermissionDenied(
                f"method {method.rsplit('/', 1)[-1]} needs scope {needed}; this token has {found.scope}"
            )
        return found

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method = str(details.method)
        if handler is None or is_exempt(method):
            return handler
        try:
            grant = self.grant_of(details.invocation_metadata, method)
        except RequestError as exc:
            return refusing_handler(handler, exc)
        return admitting_handler(handler, grant.subject)


#: The subject each admitted call was admitted as, by its servicer context (gone with the call).
_SUBJECTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_SUBJECTS_LOCK = threading.Lock()


def caller_subject(context: Any) -> str | None:
    """Who made the call whose servicer ``context`` this is: the subject of the bearer token it was
    admitted with (:data:`SHARED_SUBJECT` for ``FACEFLOW_AUTH_TOKEN_FILE``'s token), or None when
    the server checks no token, or for health (exempt).

    Servicers call it with the context gRPC hands them, e.g. to record who enrolled, named or
    forgot an identity. The value is a checked name (:data:`SUBJECT_PATTERN`), never the token.
    """
    with _SUBJECTS_LOCK:
        return _SUBJECTS.get(context)


def admitting_handler(handler: Any, subject: str) -> Any:
    """``handler`` with its behavior recording ``subject`` for :func:`caller_subject` first.

    Recorded against the servicer context rather than the thread, so it holds however the servicer
    uses threads, and it goes away with the context.
    """

    def admitted(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def call(request: Any, context: Any) -> Any:
            with _SUBJECTS_LOCK:
                _SUBJECTS[context] = subject
            return behavior(request, context)

        return call

    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        behavior = getattr(handler, kind)
        if behavior:
            return handler._replace(**{kind: admitted(behavior)})
    return handler


def refusing_handler(handler: Any, exc: RequestError) -> Any:
    """A handler of ``handler``'s kind, with its serializers, whose behavior raises a copy of ``exc``."""
    kind, message = type(exc), str(exc)

    def refuse(_request: Any, _context: Any) -> Any:
        raise kind(message)

    def refuse_streaming(_request: Any, _context: Any) -> Iterator[Any]:
        raise kind(message)
        yield  # a generator, as streaming behaviors are

    if handler.unary_unary:
        return handler._replace(unary_unary=refuse)
    if handler.stream_unary:
        return handler._replace(stream_unary=refuse)
    if handler.unary_stream:
        return handler._replace(unary_stream=refuse_streaming)
    if handler.stream_stream:
        return handler._replace(stream_stream=refuse_streaming)
    return handler


# -- client side ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClientSecurity:
    """How a faceflow client connects: plaintext or TLS (optionally with a client certificate) and
    an optional bearer token.

    TLS is on when ``root_certificates`` (PEM CAs that verify the server) or a client certificate
    is given; without ``root_certificates`` the server is verified against the system's roots.
    ``server_name`` replaces the target's host in that verification. Secrets stay out of ``repr``.
    """

    root_certificates: bytes | None = field(default=None, repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    server_name: str | None = None

    def __post_init__(self) -> None:
        _check_pem("root_certificates", self.root_certificates, (CERTIFICATE_MARKER,), "a CA certificate")
        _check_pem("certificate_chain", self.certificate_chain, (CERTIFICATE_MARKER,), "a certificate")
        _check_pem("private_key", self.private_key, KEY_MARKERS, "a private key")
        if (self.certificate_chain is None) != (self.private_key is None):
            given = "certificate_chain" if self.certificate_chain is not None else "private_key"
            raise ConfigError(
                f"expected both certificate_chain and private_key, or neither, got only {given}"
            )
        if self.server_name is not None and (
            not self.server_name or any(c.isspace() for c in self.server_name)
        ):
            raise ConfigError(f"server_name: expected a host name, got {self.server_name!r}")
        if self.server_name is not None and not self.tls:
            raise ConfigError(f"server_name: expected TLS to verify {self.server_name!r} with, got plaintext")
        check_token(self.token)

    @property
    def tls(self) -> bool:
        return self.root_certificates is not None or self.certificate_chain is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientSecurity:
        """Read ``FACEFLOW_TLS_CA_FILE``, ``FACEFLOW_TLS_CLIENT_CERT_FILE`` /
        ``FACEFLOW_TLS_CLIENT_KEY_FILE``, ``FACEFLOW_TLS_SERVER_NAME`` and
        ``FACEFLOW_AUTH_TOKEN_FILE``; none set means plaintext without a token.

        Raises:
            ConfigError: a variable without its pair, a file that cannot be read or is not what it
                should be.
        """
        ca_path = env_setting(env, TLS_CA_FILE_ENV)
        roots = None if ca_path is None else read_certificates(TLS_CA_FILE_ENV, Path(ca_path).expanduser())
        pair = _pair_of(env, TLS_CLIENT_CERT_FILE_ENV, TLS_CLIENT_KEY_FILE_ENV)
        chain = key = None
        if pair is not None:
            chain, key = read_key_pair(TLS_CLIENT_CERT_FILE_ENV, pair[0], TLS_CLIENT_KEY_FILE_ENV, pair[1])
        server_name = env_setting(env, TLS_SERVER_NAME_ENV)
        if server_name is not None and roots is None and chain is None:
            raise ConfigError(
                f"{TLS_SERVER_NAME_ENV} is set: expected {TLS_CA_FILE_ENV} (TLS) as well, got plaintext"
            )
        token = _token_of(env)
        return cls(
            root_certificates=roots,
            certificate_chain=chain,
            private_key=key,
            token=token,
            server_name=server_name,
        )

    def describe(self) -> str:
        """What is on, e.g. ``TLS (client certificate), bearer token``; never a secret."""
        if not self.tls:
            transport = "plaintext"
        else:
            transport = "TLS (client certificate)" if self.certificate_chain is not None else "TLS"
            if self.server_name:
                transport += f" as {self.server_name}"
        return f"{transport}, {'bearer token' if self.token is not None else 'no token'}"


def client_security_from_env(env: Mapping[str, str]) -> ClientSecurity:
    """:meth:`ClientSecurity.from_env`."""
    return ClientSecurity.from_env(env)


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str | bytes]] | None
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _BearerMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds ``authorization: Bearer <token>`` to every call of a plaintext channel (gRPC sends call
    credentials only over TLS)."""

    def __init__(self, token: str) -> None:
        self._entry = (AUTHORIZATION, f"{BEARER} {token}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"

    def _details(self, details: Any) -> _CallDetails:
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != AUTHORIZATION]
        return _CallDetails(
            details.method,
            details.timeout,
            [*metadata, self._entry],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def channel_for(
    target: str,
    security: ClientSecurity | None = None,
    *,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to ``target`` secured as ``security`` says (default: :func:`client_security_from_env`
    of ``os.environ``), with the given channel options.

    Raises:
        ConfigError: the environment's settings are invalid (only when ``security`` is None).
    """
    if security is None:
        security = client_security_from_env(os.environ)
    channel_options = list(options)
    if security.server_name is not None:
        channel_options.append(("grpc.ssl_target_name_override", security.server_name))
    if security.tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=security.root_certificates,
            private_key=security.private_key,
            certificate_chain=security.certificate_chain,
        )
        if security.token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(security.token)
            )
        return grpc.secure_channel(target, credentials, options=channel_options)
    channel = grpc.insecure_channel(target, options=channel_options)
    if security.token is not None:
        return grpc.intercept_channel(channel, _BearerMetadata(security.token))
    return channel

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
  (``/grpc.health.v1.Health/*``) is exempt; reflection is not.

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

import hmac
import os
import re
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from faceflow.errors import ConfigError, PermissionDenied, RequestError, Unauthenticated

TLS_CERT_FILE_ENV = "FACEFLOW_TLS_CERT_FILE"
TLS_KEY_FILE_ENV = "FACEFLOW_TLS_KEY_FILE"
TLS_CLIENT_CA_FILE_ENV = "FACEFLOW_TLS_CLIENT_CA_FILE"
AUTH_TOKEN_FILE_ENV = "FACEFLOW_AUTH_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret
TLS_CA_FILE_ENV = "FACEFLOW_TLS_CA_FILE"
TLS_CLIENT_CERT_FILE_ENV = "FACEFLOW_TLS_CLIENT_CERT_FILE"
TLS_CLIENT_KEY_FILE_ENV = "FACEFLOW_TLS_CLIENT_KEY_FILE"
TLS_SERVER_NAME_ENV = "FACEFLOW_TLS_SERVER_NAME"

#: The metadata key and scheme of the bearer token (RFC 6750 over gRPC metadata).
AUTHORIZATION = "authorization"
BEARER = "Bearer"
#: Methods that answer without a token: Kubernetes probes and load balancers call them.
EXEMPT_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)

_CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
_KEY_MARKERS = (
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN RSA PRIVATE KEY-----",
    b"-----BEGIN EC PRIVATE KEY-----",
)
_ENCRYPTED_KEY_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


# -- reading files named by variables ---------------------------------------------------------------


def _token_of(env: Mapping[str, str]) -> str | None:
    """The shared bearer token from ``FACEFLOW_AUTH_TOKEN_FILE`` (servers check it, clients send it)."""
    path = env_setting(env, AUTH_TOKEN_FILE_ENV)
    return None if path is None else read_secret_file(AUTH_TOKEN_FILE_ENV, Path(path).expanduser())


def env_setting(env: Mapping[str, str], variable: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = env.get(variable, "").strip()
    return value or None


def _read_bytes(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{variable}={path}: cannot read it: {exc.strerror or type(exc).__name__}"
        ) from None


def read_secret_file(variable: str, path: Path) -> str:
    """The secret held in ``path`` (named by ``variable``), with one trailing newline stripped.

    Raises:
        ConfigError: the file cannot be read, is empty, is not UTF-8, or holds characters other
            than visible ASCII (the message never shows the secret).
    """
    data = _read_bytes(variable, path)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ConfigError(f"{variable}={path}: expected a secret, got an empty file")
    invalid = sum(1 for b in data if not 0x21 <= b <= 0x7E)
    if invalid:
        raise ConfigError(
            f"{variable}={path}: expected one line of visible ASCII (no spaces), "
            f"got {invalid} other byte(s) in {len(data)} (the secret is not shown)"
        )
    return data.decode("ascii")


def read_certificates(variable: str, path: Path) -> bytes:
    """PEM certificates from ``path``, checked to parse (a chain or a CA bundle).

    Raises:
        ConfigError: unreadable, no ``BEGIN CERTIFICATE`` block, or a block that does not parse.
    """
    data = _read_bytes(variable, path)
    if _CERTIFICATE_MARKER not in data:
        raise ConfigError(
            f"{variable}={path}: expected PEM certificates ({_CERTIFICATE_MARKER.decode()}), "
            f"got none in {len(data)} bytes"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"{variable}={path}: expected PEM certificates, got ones that do not parse ({_why(exc)})"
        ) from None
    return data


def read_key_pair(
    cert_variable: str, cert_path: Path, key_variable: str, key_path: Path
) -> tuple[bytes, bytes]:
    """A PEM certificate chain and its unencrypted private key, checked to belong together.

    Raises:
        ConfigError: either file is unreadable or not PEM, the key is encrypted, or the key is
            not the certificate's.
    """
    chain = read_certificates(cert_variable, cert_path)
    key = _read_bytes(key_variable, key_path)
    if any(marker in key for marker in _ENCRYPTED_KEY_MARKERS):
        raise ConfigError(
            f"{key_variable}={key_path}: expected an unencrypted PEM private key, got an encrypted one"
        )
    if not any(marker in key for marker in _KEY_MARKERS):
        raise ConfigError(
            f"{key_variable}={key_path}: expected a PEM private key (-----BEGIN PRIVATE KEY-----), "
            f"got none in {len(key)} bytes"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{key_variable}={key_path}: expected the private key of the certificate in "
            f"{cert_variable}={cert_path}, got one that does not match or parse ({_why(exc)})"
        ) from None
    return chain, key


def _no_password() -> bytes:
    return b""  # never prompt on a terminal for an encrypted key (refused above anyway)


def _why(exc: BaseException) -> str:
    """OpenSSL's short reason (``KEY_VALUES_MISMATCH``), else its message without the source line."""
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text) or type(exc).__name__


def _pair_of(env: Mapping[str, str], first: str, second: str) -> tuple[Path, Path] | None:
    a, b = env_setting(env, first), env_setting(env, second)
    if a is None and b is None:
        return None
    if a is None or b is None:
        given = first if a is not None else second
        raise ConfigError(f"expected both {first} and {second}, or neither, got only {given}")
    return Path(a).expanduser(), Path(b).expanduser()


def _check_token(token: str | None) -> None:
    if token is None:
        return
    if not isinstance(token, str) or not token:
        raise ConfigError("token: expected a non-empty string, got an empty or non-string value")
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigError("token: expected visible ASCII without spaces, got other characters (not shown)")


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
    bearer token every call but health must carry. Secrets stay out of ``repr``.
    """

    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    client_ca: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_pem("certificate_chain", self.certificate_chain, (_CERTIFICATE_MARKER,), "a certificate")
        _check_pem("private_key", self.private_key, _KEY_MARKERS, "a private key")
        _check_pem("client_ca", self.client_ca, (_CERTIFICATE_MARKER,), "a CA certificate")
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
        _check_token(self.token)

    @property
    def tls(self) -> bool:
        return self.certificate_chain is not None

    @property
    def mutual_tls(self) -> bool:
        return self.client_ca is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSecurity:
        """Read the ``FACEFLOW_TLS_*`` and ``FACEFLOW_AUTH_TOKEN_FILE`` variables (see the module
        docstring); none set means plaintext without a token.

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
        return cls(certificate_chain=chain, private_key=key, client_ca=client_ca, token=token)

    def interceptors(self) -> Sequence[grpc.ServerInterceptor]:
        """The bearer-token check, when a token is configured (none otherwise)."""
        return (BearerTokenCheck(self.token),) if self.token is not None else ()

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
        return f"{transport}, {'bearer token' if self.token is not None else 'no token'}"


def server_security_from_env(env: Mapping[str, str]) -> ServerSecurity:
    """:meth:`ServerSecurity.from_env` (what the gRPC server scaffold calls when given none)."""
    return ServerSecurity.from_env(env)


def _is_exempt(method: str) -> bool:
    return method.startswith(EXEMPT_METHOD_PREFIXES)


def check_bearer(metadata: Sequence[tuple[str, str | bytes]] | None, token: str) -> None:
    """Check a call's ``authorization`` metadata against ``token``, in constant time.

    Raises:
        Unauthenticated: no ``authorization`` entry, several, or not ``Bearer <token>``.
        PermissionDenied: a bearer token that is not ``token``.
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
    if not hmac.compare_digest(credential.encode("utf-8", "replace"), token.encode("ascii")):
        raise PermissionDenied("the bearer token is not the one this service accepts")


class BearerTokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses every call but health without the right ``authorization: Bearer`` metadata.

    A refused call gets a handler of the same kind (unary or streaming, same serializers) whose
    behavior raises the :class:`~faceflow.errors.RequestError`; the scaffold's error mapping, which
    wraps this interceptor, turns it into its status code, logs and counts it.
    """

    def __init__(self, token: str | None) -> None:
        _check_token(token)
        if token is None:
            raise ConfigError("token: expected a bearer token, got None")
        self._token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token=***)"

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or _is_exempt(str(details.method)):
            return handler
        try:
            check_bearer(details.invocation_metadata, self._token)
        except RequestError as exc:
            return refusing_handler(handler, exc)
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
        _check_pem("root_certificates", self.root_certificates, (_CERTIFICATE_MARKER,), "a CA certificate")
        _check_pem("certificate_chain", self.certificate_chain, (_CERTIFICATE_MARKER,), "a certificate")
        _check_pem("private_key", self.private_key, _KEY_MARKERS, "a private key")
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
        _check_token(self.token)

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

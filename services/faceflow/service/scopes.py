"""What a bearer token may do: scopes, the method-to-scope table and the tokens file.

:mod:`faceflow.service.security` checks tokens on every call; this module says what each accepted
token allows. A ``read`` token may call the methods :data:`METHOD_SCOPES` marks read; an ``admin``
token may call every method. The tokens file (``FACEFLOW_AUTH_TOKENS_FILE``, read by
:func:`read_tokens_file`) gives each client a token, a scope and a subject (:class:`TokenGrant`):
the name servicers learn from :func:`faceflow.service.security.caller_subject` and audit records
carry. It sits apart from the transport code so that adding a method to a proto means editing one
short table here, not the TLS and interceptor module.

Every problem is a :class:`~faceflow.errors.ConfigError` (the file) or a
:class:`~faceflow.errors.ServiceStartError` (a method without a scope) of one line; no message, log
or repr ever shows a token.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pool

from faceflow.errors import ConfigError, ServiceStartError
from faceflow.secrets import read_file_bytes

#: Methods that answer without a token: Kubernetes probes and load balancers call them.
EXEMPT_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/",)


def check_token(token: str | None) -> None:
    """Refuse a token that is empty, not a string, or not visible ASCII (None passes: no token).

    Raises:
        ConfigError: the message never shows the token.
    """
    if token is None:
        return
    if not isinstance(token, str) or not token:
        raise ConfigError("token: expected a non-empty string, got an empty or non-string value")
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        raise ConfigError("token: expected visible ASCII without spaces, got other characters (not shown)")


def is_exempt(method: str) -> bool:
    """Whether ``method`` (a full path) answers without a token (health)."""
    return method.startswith(EXEMPT_METHOD_PREFIXES)


# -- scopes and the tokens file ---------------------------------------------------------------------


class Scope(enum.Enum):
    """What a bearer token may do: ``read`` only looks; ``admin`` also changes things, and implies
    ``read``."""

    READ = "read"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        """Whether a token of this scope may call a method that needs ``needed``."""
        return self is Scope.ADMIN or needed is Scope.READ

    def __str__(self) -> str:
        return self.value


#: The scope every method of every service faceflow serves needs, by service and method name.
#: Read: calls that only look (``Subscribe``, ``Get*``, ``List*``, reflection). Admin: calls that
#: change the gallery, the sources or the data (``PushFrames`` feeds frames into the mesh).
#: Health is absent: it is exempt from tokens. :func:`method_scopes` checks this table against the
#: services' descriptors, so a method added to a proto without a line here stops the server's
#: start (with scoped tokens) and fails ``tests/service/test_scoped_tokens.py``: it is never
#: silently given a scope.
METHOD_SCOPES: Mapping[str, Mapping[str, Scope]] = {
    "faceflow.v1.Aggregator": {
        "Subscribe": Scope.READ,
        "GetTrack": Scope.READ,
        "ListTracks": Scope.READ,
        "GetStream": Scope.READ,
        "ListStreams": Scope.READ,
        "ListIdentities": Scope.READ,
        "GetIdentity": Scope.READ,
        "EnrollIdentity": Scope.ADMIN,
        "NameIdentity": Scope.ADMIN,
        "ForgetIdentity": Scope.ADMIN,
    },
    "faceflow.v1.Ingest": {
        "ListSources": Scope.READ,
        "PushFrames": Scope.ADMIN,
        "StartSource": Scope.ADMIN,
        "StopSource": Scope.ADMIN,
    },
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": Scope.READ},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": Scope.READ},
}
#: The subject of the token in ``FACEFLOW_AUTH_TOKEN_FILE`` (which has every scope).
SHARED_SUBJECT = "shared-token"
#: The shortest token the tokens file accepts (``openssl rand -hex 32`` makes 64 characters).
MIN_TOKEN_CHARS = 16
#: A subject: a name for audit records and logs, never free text.
SUBJECT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,63}")
_LINE_FORM = "'<scope> <subject> <token>'"


def method_scopes(
    services: Iterable[str],
    *,
    table: Mapping[str, Mapping[str, Scope]] | None = None,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> dict[str, Scope]:
    """The scope each method of ``services`` needs, keyed by its full path
    (``/faceflow.v1.Aggregator/Subscribe``), read from the services' descriptors (``pool``, default
    the generated modules' pool) and looked up in ``table`` (default :data:`METHOD_SCOPES`).
    Exempt methods (health) are left out.

    Raises:
        ServiceStartError: a service without a descriptor, a method without a scope in ``table``,
            or a ``table`` entry for a method the service does not have (renamed?).
    """
    pool = descriptor_pool.Default() if pool is None else pool
    table = METHOD_SCOPES if table is None else table
    scopes: dict[str, Scope] = {}
    for name in services:
        try:
            service = pool.FindServiceByName(name)
        except KeyError:
            raise ServiceStartError(
                f"service {name}: no protobuf descriptor, so its methods cannot be given scopes "
                "(import its *_pb2 module first)"
            ) from None
        known = table.get(name, {})
        names = {method.name for method in service.methods}
        for method in service.methods:
            path = f"/{name}/{method.name}"
            if is_exempt(path):
                continue
            if method.name not in known:
                raise ServiceStartError(
                    f"{path}: expected a scope in faceflow.service.scopes.METHOD_SCOPES, got none: "
                    "add it as Scope.READ (it only looks) or Scope.ADMIN (it changes something)"
                )
            scopes[path] = known[method.name]
        stale = sorted(set(known) - names)
        if stale:
            raise ServiceStartError(
                f"METHOD_SCOPES[{name!r}]: expected methods of {name}, got {', '.join(stale)}, "
                "which it does not have (renamed or removed? update the table)"
            )
    return scopes


@dataclass(frozen=True)
class TokenGrant:
    """One accepted bearer token: the scope it grants and its subject (who holds it, reported by
    :func:`caller_subject`). The token stays out of ``repr`` and of every message."""

    scope: Scope
    subject: str
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.scope, Scope):
            raise ConfigError(f"scope: expected Scope.READ or Scope.ADMIN, got {type(self.scope).__name__}")
        if not isinstance(self.subject, str) or not SUBJECT_PATTERN.fullmatch(self.subject):
            raise ConfigError(
                "subject: expected 1 to 64 letters, digits or ._@:+- (starting with a letter or a "
                "digit), got another value (not shown)"
            )
        check_token(self.token)
        if self.token is None:
            raise ConfigError("token: expected a bearer token, got None")


def _shown_scope(word: str) -> str:
    """``'write'`` for a short word; a long one might be a token in the wrong column."""
    return repr(word) if re.fullmatch(r"[A-Za-z]{1,12}", word) else "another word (not shown)"


def parse_tokens(
    data: bytes, where: str, *, taken: Mapping[str, str] | None = None
) -> tuple[TokenGrant, ...]:
    """The grants of a tokens file: lines of ``<scope> <subject> <token>`` separated by spaces or
    tabs, ``scope`` being ``read`` or ``admin``; blank lines and lines starting with ``#`` are
    skipped. One subject may hold several tokens (a client moving to a new one), all of one scope.

    ``where`` names the file in messages (``FACEFLOW_AUTH_TOKENS_FILE=/path``); ``taken`` maps
    tokens accepted elsewhere to where (a token there is refused here as a duplicate).

    Raises:
        ConfigError: one line naming the file and the line number, never a token: a line of other
            than three fields or with non-ASCII bytes, an unknown scope, a bad subject, a token
            shorter than :data:`MIN_TOKEN_CHARS`, a token given twice, a subject given two scopes,
            or no token at all.
    """
    grants: list[TokenGrant] = []
    line_of_token: dict[str, str] = dict(taken or {})
    scope_of_subject: dict[str, tuple[Scope, int]] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.strip(b" \t\r")
        if not line or line.startswith(b"#"):
            continue
        at = f"{where}:{number}"
        odd = sum(1 for b in line if not (0x21 <= b <= 0x7E or b in b" \t"))
        if odd:
            raise ConfigError(
                f"{at}: expected visible ASCII fields separated by spaces, got {odd} other byte(s) "
                "(the line is not shown)"
            )
        fields = line.decode("ascii").split()
        if len(fields) != 3:
            raise ConfigError(f"{at}: expected {_LINE_FORM}, got {len(fields)} field(s) (not shown)")
        scope_word, subject, token = fields
        try:
            scope = Scope(scope_word)
        except ValueError:
            raise ConfigError(
                f"{at}: scope: expected 'read' or 'admin', got {_shown_scope(scope_word)}"
            ) from None
        if not SUBJECT_PATTERN.fullmatch(subject):
            raise ConfigError(
                f"{at}: subject: expected 1 to 64 letters, digits or ._@:+- (starting with a letter "
                "or a digit), got another word (not shown)"
            )
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{at}: token: expected at least {MIN_TOKEN_CHARS} characters, got {len(token)} "
                "(not shown; make one with 'openssl rand -hex 32')"
            )
        if token in line_of_token:
            raise ConfigError(
                f"{at}: token: expected one token per client, got the same token as "
                f"{line_of_token[token]} (not shown)"
            )
        line_of_token[token] = f"line {number}"
        earlier = scope_of_subject.setdefault(subject, (scope, number))
        if earlier[0] is not scope:
            raise ConfigError(
                f"{at}: subject: expected one scope per subject, got {scope} here and {earlier[0]} "
                f"on line {earlier[1]} for the same subject"
            )
        grants.append(TokenGrant(scope=scope, subject=subject, token=token))
    if not grants:
        raise ConfigError(f"{where}: expected at least one {_LINE_FORM} line, got none")
    return tuple(grants)


def read_tokens_file(
    variable: str, path: Path, *, taken: Mapping[str, str] | None = None
) -> tuple[TokenGrant, ...]:
    """:func:`parse_tokens` of the file ``path`` named by ``variable``.

    Raises:
        ConfigError: the file cannot be read, or :func:`parse_tokens` refuses it.
    """
    return parse_tokens(read_file_bytes(variable, path), f"{variable}={path}", taken=taken)

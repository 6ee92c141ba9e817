"""One config loader for every service (STYLE.md #4): defaults, then a file, then the environment
with a per-service prefix, then flags.

A service's config is a frozen ``kw_only`` dataclass that validates itself on construction. This
module reads its fields by their declared types, so no service re-types a list of "int fields":

* ``load_env(cls, env, prefix=...)`` reads ``<PREFIX><FIELD>`` (upper case) for every field, e.g.
  ``FACEFLOW_ANALYZER_MAX_BATCH_FRAMES``; an empty variable means "the default";
* ``load_file(path)`` reads a YAML mapping of field names (``--config FILE``);
* :class:`ConfigMixin` gives every config ``with_overrides`` (flags: None means "not given") and
  ``describe`` (the resolved config for the start-up log, secrets redacted).

Types understood: ``str``, ``int``, ``float``, ``bool`` (true/false/1/0/yes/no/on/off), ``Path``,
``Enum`` subclasses (by value), and ``X | None`` of those (``""`` and ``none`` mean None; for an
``int | None`` field marked ``zero_is_none`` in its metadata, ``0`` means None too). Fields of
other types (tuples of sources, ...) are skipped: their service reads them itself. Errors say the
variable, what was expected and what was found: ``FACEFLOW_INGEST_GRPC_PORT: expected an integer,
got 'http'``.
"""

from __future__ import annotations

import argparse
import enum
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import Field, fields, replace
from pathlib import Path
from typing import Any, Self

from faceflow.errors import ConfigError
from faceflow.kafka import bootstrap

#: Mesh-wide variables (not prefixed): every service reads them. The broker's pair lives in
#: faceflow.kafka.bootstrap, a layer below, so that kafka/'s own CLI reads it too.
KAFKA_BOOTSTRAP_ENV = bootstrap.KAFKA_BOOTSTRAP_ENV
TRITON_URL_ENV = "FACEFLOW_TRITON_URL"
DEFAULT_BOOTSTRAP = bootstrap.DEFAULT_BOOTSTRAP
DEFAULT_TRITON_URL = "127.0.0.1:8001"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Field names whose values never appear in logs.
SECRET_FIELDS = frozenset({"auth_token", "sasl_password", "password"})


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def parse_value(variable: str, raw: str, kind: Any, *, zero_is_none: bool = False, error: type[ConfigError]
                = ConfigError) -> Any:  # fmt: skip
    """Parse the text ``raw`` of ``variable`` as ``kind`` (see the module docstring).

    Raises:
        ConfigError (or ``error``): "<variable>: expected <what>, got <raw>".
    """
    inner, optional = _unwrap_optional(kind)
    text = raw.strip()
    if optional and text.lower() in ("", "none", "null"):
        return None
    if inner is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise error(f"{variable}: expected true or false, got {raw!r}")
    if inner is int:
        try:
            value = int(text)
        except ValueError:
            raise error(f"{variable}: expected an integer, got {raw!r}") from None
        return None if (optional and zero_is_none and value == 0) else value
    if inner is float:
        try:
            number = float(text)
        except ValueError:
            raise error(f"{variable}: expected a number, got {raw!r}") from None
        if not math.isfinite(number):
            raise error(f"{variable}: expected a finite number, got {raw!r}")
        return number
    if inner is Path:
        return Path(text).expanduser()
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        try:
            return inner(text)
        except ValueError:
            choices = ", ".join(str(e.value) for e in inner)
            raise error(f"{variable}: expected one of {choices}, got {raw!r}") from None
    if inner is str:
        return text
    raise TypeError(f"{variable}: cannot parse a field of type {kind!r} from the environment")


def _parsable(kind: Any) -> bool:
    inner, _ = _unwrap_optional(kind)
    return inner in (str, int, float, bool, Path) or (
        isinstance(inner, type) and issubclass(inner, enum.Enum)
    )


def load_env(
    cls: type[Any],
    env: Mapping[str, str],
    *,
    prefix: str,
    skip: Iterable[str] = (),
    error: type[ConfigError] = ConfigError,
) -> dict[str, Any]:
    """The values of ``cls``'s fields found in ``env`` as ``<prefix><FIELD>`` (empty: not set)."""
    hints = typing.get_type_hints(cls)
    skipped = set(skip)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in skipped or not _parsable(hints[f.name]):
            continue
        variable = prefix + f.name.upper()
        raw = env.get(variable)
        if raw is None or raw.strip() == "":
            continue
        values[f.name] = parse_value(
            variable, raw, hints[f.name], zero_is_none=bool(f.metadata.get("zero_is_none")), error=error
        )
    return values


def load_file(path: Path, cls: type[Any], *, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """Field values from a YAML mapping of field names (``--config FILE``); unknown keys are errors."""
    import yaml  # noqa: PLC0415 - only services that take a config file need it

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise error(f"{path}: expected a mapping of settings, got {type(document).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(map(str, document)) - set(known))
    if unknown:
        raise error(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in document.items():
        f: Field[Any] = known[str(key)]
        if isinstance(value, str) and _parsable(hints[f.name]):
            values[f.name] = parse_value(
                f"{path}: {key}", value, hints[f.name], zero_is_none=bool(f.metadata.get("zero_is_none")),
                error=error,
            )  # fmt: skip
        else:
            values[f.name] = value
    return values


def check_names(config: object, names: Iterable[str], *, error: type[ConfigError] = ConfigError) -> None:
    """Each field in ``names`` is a string of 1..249 characters, Kafka's length limit for topics,
    groups and client ids (the broker itself refuses characters it does not allow)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, str) or not 0 < len(value) <= 249:
            raise error(f"{name}: expected a name of 1..249 characters, got {value!r}")


def check_ports(config: object, names: Iterable[str], *, error: type[ConfigError] = ConfigError) -> None:
    """Each field in ``names`` is a TCP port, 0 meaning "pick a free one"."""
    for name in names:
        port = getattr(config, name)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise error(f"{name}: expected a port in 0..65535 (0 picks a free one), got {port!r}")


def check_hostports(config: object, names: Iterable[str], *, error: type[ConfigError] = ConfigError) -> None:
    """Each field in ``names`` is ``host:port[,host:port...]`` with ports in 1..65535."""
    for name in names:
        value = getattr(config, name)
        for part in str(value).split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise error(f"{name}: expected host:port[,host:port...], got {value!r}")


def check_positive(config: object, names: Iterable[str], *, error: type[ConfigError] = ConfigError) -> None:
    """Each field in ``names`` is a number (not a bool) > 0 (seconds, intervals)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise error(f"{name}: expected a number > 0, got {value!r}")


def check_int(name: str, value: object, *, minimum: int, error: type[ConfigError] = ConfigError) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``.

    Raises:
        ConfigError (``error``): "``name``: expected an int >= minimum, got ``value``".
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def check_ints(
    config: object, minimums: Iterable[tuple[str, int]], *, error: type[ConfigError] = ConfigError
) -> None:
    """Each ``(field, minimum)``: the field passes :func:`check_int`."""
    for name, low in minimums:
        check_int(name, getattr(config, name), minimum=low, error=error)


#: The broker's default ``group.min.session.timeout.ms``: a shorter session is refused at join time.
MIN_SESSION_TIMEOUT_MS = 6000


def check_consumer_timeouts(config: Any, *, error: type[ConfigError] = ConfigError) -> None:
    """``session_timeout_ms`` and ``max_poll_interval_ms`` of a consumer-group service, checked alike
    by every service: ``6000 <= session <= max_poll``.

    The session timeout is how long a member that stopped heartbeating (killed, frozen, cut off)
    keeps its partitions before the group moves them: the failover time after ``kill -9``. Shorter
    fails over sooner, and a GC pause or a loaded node beyond it causes a needless rebalance. Below
    6000 the broker refuses the join (its default ``group.min.session.timeout.ms``), and a session
    longer than the poll interval would never be the limit that ejects a member.
    """
    session = config.session_timeout_ms
    max_poll = config.max_poll_interval_ms
    check_int("session_timeout_ms", session, minimum=MIN_SESSION_TIMEOUT_MS, error=error)
    check_int("max_poll_interval_ms", max_poll, minimum=MIN_SESSION_TIMEOUT_MS, error=error)
    if max_poll < session:
        raise error(
            f"session_timeout_ms / max_poll_interval_ms: expected {MIN_SESSION_TIMEOUT_MS} <= session <= "
            f"max_poll, got {session} / {max_poll}"
        )


def add_consumer_timeout_arguments(p: argparse.ArgumentParser) -> None:
    """``--session-timeout-ms`` and ``--max-poll-interval-ms``, the same on every consumer service."""
    p.add_argument(
        "--session-timeout-ms",
        type=int,
        help="a silent member keeps its partitions this long: failover time after a kill vs false "
        "rebalances on a pause; 6000..max-poll-interval (default 30000)",
    )
    p.add_argument(
        "--max-poll-interval-ms",
        type=int,
        help="longest gap between polls before the member is ejected (default 300000)",
    )


class ConfigMixin:
    """``with_overrides`` and ``describe`` for a frozen config dataclass."""

    def with_overrides(self, **overrides: Any) -> Self:
        """A copy with the overrides that are not None applied (and validated)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[type-var]

    def describe(self) -> dict[str, str]:
        """Every setting as text, for the start-up log (secrets shown as ``***``)."""
        out: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            secret = f.name in SECRET_FIELDS or bool(f.metadata.get("secret"))
            out[f.name] = (
                "***" if secret and value else str(value.value if isinstance(value, enum.Enum) else value)
            )
        return out

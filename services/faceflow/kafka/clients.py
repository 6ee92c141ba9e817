"""Producer and consumer factories with faceflow's delivery contract built in (DESIGN.md).

* Producers: ``acks=all``, idempotent, compressed, request size sized for the topic's
  ``max.message.bytes``. A send is complete only when its future resolves.
* Consumers: no auto-commit (we commit after our outputs are acknowledged), start from the
  earliest offset when a group is new (kafka-python defaults to ``latest``, which silently skips
  what was produced before the consumer joined), cooperative-sticky assignment.
* Every client, producers, consumers and the admin client of :mod:`faceflow.kafka.admin`, connects
  as one :class:`KafkaSecurity` says: by default the one :func:`kafka_security_from_env` reads
  from the mesh-wide ``FACEFLOW_KAFKA_*`` variables (see :class:`KafkaSecurity`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor

from faceflow.errors import ConfigError
from faceflow.kafka import compat
from faceflow.kafka.headers import HeaderList
from faceflow.secrets import env_setting, read_certificates, read_key_pair, read_secret_file
from faceflow.topics import FRAMES_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

SECURITY_PROTOCOL_ENV = "FACEFLOW_KAFKA_SECURITY_PROTOCOL"
SASL_MECHANISM_ENV = "FACEFLOW_KAFKA_SASL_MECHANISM"
SASL_USERNAME_ENV = "FACEFLOW_KAFKA_SASL_USERNAME"
SASL_PASSWORD_FILE_ENV = "FACEFLOW_KAFKA_SASL_PASSWORD_FILE"  # noqa: S105 - a variable name, not a secret
SSL_CAFILE_ENV = "FACEFLOW_KAFKA_SSL_CAFILE"
SSL_CERTFILE_ENV = "FACEFLOW_KAFKA_SSL_CERTFILE"
SSL_KEYFILE_ENV = "FACEFLOW_KAFKA_SSL_KEYFILE"
#: Kafka's security protocols, and the SASL mechanisms kafka-python speaks with a user and password.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, kw_only=True)
class KafkaSecurity:
    """How a Kafka client authenticates and encrypts, mapped onto kafka-python's arguments.

    ``protocol`` is one of :data:`SECURITY_PROTOCOLS`. With ``SASL_PLAINTEXT`` or ``SASL_SSL``,
    ``sasl_mechanism`` (one of :data:`SASL_MECHANISMS`), ``sasl_username`` and ``sasl_password``
    are required; otherwise they must be unset. ``ssl_cafile`` (the CA that verifies the brokers;
    the system's roots without it), ``ssl_certfile`` and ``ssl_keyfile`` (a client certificate,
    both or neither) are allowed only with ``SSL`` or ``SASL_SSL``. The password stays out of
    ``repr`` and :meth:`describe`.

    From the environment (:meth:`from_env`): ``FACEFLOW_KAFKA_SECURITY_PROTOCOL``,
    ``FACEFLOW_KAFKA_SASL_MECHANISM``, ``FACEFLOW_KAFKA_SASL_USERNAME``,
    ``FACEFLOW_KAFKA_SASL_PASSWORD_FILE`` (a file holding the password; one trailing newline is
    stripped), ``FACEFLOW_KAFKA_SSL_CAFILE``, ``FACEFLOW_KAFKA_SSL_CERTFILE``,
    ``FACEFLOW_KAFKA_SSL_KEYFILE``.
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"{SECURITY_PROTOCOL_ENV}: expected one of {', '.join(SECURITY_PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        sasl_given = [
            name
            for name, value in (
                (SASL_MECHANISM_ENV, self.sasl_mechanism),
                (SASL_USERNAME_ENV, self.sasl_username),
                (SASL_PASSWORD_FILE_ENV, self.sasl_password),
            )
            if value is not None
        ]
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                got = "nothing" if self.sasl_mechanism is None else repr(self.sasl_mechanism)
                raise ConfigError(
                    f"{SASL_MECHANISM_ENV}: expected one of {', '.join(SASL_MECHANISMS)} with "
                    f"{SECURITY_PROTOCOL_ENV}={self.protocol}, got {got}"
                )
            if not self.sasl_username:
                raise ConfigError(
                    f"{SASL_USERNAME_ENV}: expected the SASL user name with "
                    f"{SECURITY_PROTOCOL_ENV}={self.protocol}, got nothing"
                )
            if not self.sasl_password:
                raise ConfigError(
                    f"{SASL_PASSWORD_FILE_ENV}: expected a file holding the password of SASL user "
                    f"{self.sasl_username!r} with {SECURITY_PROTOCOL_ENV}={self.protocol}, got nothing"
                )
        elif sasl_given:
            raise ConfigError(
                f"{', '.join(sasl_given)} set: expected {SECURITY_PROTOCOL_ENV}=SASL_PLAINTEXT or SASL_SSL "
                f"to use them, got {self.protocol}"
            )
        ssl_given = [
            name
            for name, value in (
                (SSL_CAFILE_ENV, self.ssl_cafile),
                (SSL_CERTFILE_ENV, self.ssl_certfile),
                (SSL_KEYFILE_ENV, self.ssl_keyfile),
            )
            if value is not None
        ]
        if ssl_given and not self.uses_ssl:
            raise ConfigError(
                f"{', '.join(ssl_given)} set: expected {SECURITY_PROTOCOL_ENV}=SSL or SASL_SSL to use them, "
                f"got {self.protocol}"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            given = SSL_CERTFILE_ENV if self.ssl_certfile is not None else SSL_KEYFILE_ENV
            raise ConfigError(
                f"expected both {SSL_CERTFILE_ENV} and {SSL_KEYFILE_ENV}, or neither, got only {given}"
            )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol.endswith("SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        """Read the ``FACEFLOW_KAFKA_*`` security variables (blank means unset; the protocol is
        read case-insensitively, as are mechanisms). The password file is read, and the certificate
        files are checked to parse, now; kafka-python reads the certificate files again when it
        connects.

        Raises:
            ConfigError: an invalid combination, or a file that cannot be read or is not PEM.
        """

        def get(name: str) -> str | None:
            return env_setting(env, name)

        protocol = (get(SECURITY_PROTOCOL_ENV) or "PLAINTEXT").upper()
        mechanism = get(SASL_MECHANISM_ENV)
        password_file = get(SASL_PASSWORD_FILE_ENV)
        cafile, certfile, keyfile = (
            None if value is None else Path(value).expanduser()
            for value in (get(SSL_CAFILE_ENV), get(SSL_CERTFILE_ENV), get(SSL_KEYFILE_ENV))
        )
        password = None
        if password_file is not None:
            password = read_secret_file(SASL_PASSWORD_FILE_ENV, Path(password_file).expanduser())
        security = cls(
            protocol=protocol,
            sasl_mechanism=None if mechanism is None else mechanism.upper(),
            sasl_username=get(SASL_USERNAME_ENV),
            sasl_password=password,
            ssl_cafile=cafile,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        if cafile is not None:
            read_certificates(SSL_CAFILE_ENV, cafile)
        if certfile is not None and keyfile is not None:
            read_key_pair(SSL_CERTFILE_ENV, certfile, SSL_KEYFILE_ENV, keyfile)
        return security

    def client_config(self) -> dict[str, Any]:
        """The kafka-python arguments (``security_protocol``, ``sasl_*``, ``ssl_*``) for any client."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.uses_ssl:
            config["ssl_check_hostname"] = True
            for key, value in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if value is not None:
                    config[key] = str(value)
        return config

    def describe(self) -> str:
        """The settings without the password: ``SASL_SSL, SCRAM-SHA-512 as faceflow-ingest, CA /ca.crt``."""
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.uses_ssl:
            parts.append(f"CA {self.ssl_cafile}" if self.ssl_cafile else "system CAs")
            if self.ssl_certfile is not None:
                parts.append(f"client certificate {self.ssl_certfile}")
        return ", ".join(parts)


def kafka_security_from_env(env: Mapping[str, str]) -> KafkaSecurity:
    """:meth:`KafkaSecurity.from_env`."""
    return KafkaSecurity.from_env(env)


#: kafka-python loggers that print a client's configuration or raw SASL requests at DEBUG (PLAIN
#: sends the password itself); :class:`_RedactSecrets` guards them.
KAFKA_LOGGERS_WITH_SECRETS = ("kafka.admin.client", "kafka.protocol.parser", "kafka.net.connection")


class _RedactSecrets(logging.Filter):
    """Replaces every registered secret in a record's message with ``***`` (its text and its
    escaped form in a bytes repr). Runs only for records a logger emits, i.e. at DEBUG when asked."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        """Redact ``secret`` from now on (the first call attaches the filter to the loggers)."""
        forms = {secret, repr(secret.encode())[2:-1], repr(secret)[1:-1]}
        with self._lock:
            if not self._secrets:
                for name in KAFKA_LOGGERS_WITH_SECRETS:
                    logging.getLogger(name).addFilter(self)
            self._secrets = self._secrets | forms

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in sorted(secrets, key=len, reverse=True):
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT = _RedactSecrets()


def client_settings(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """The arguments every faceflow Kafka client starts from: the broker list and ``security``
    (default: :func:`kafka_security_from_env` of ``os.environ``). A SASL password is registered
    with the filter that keeps it out of kafka-python's DEBUG logs.

    Raises:
        ConfigError: the environment's security settings are invalid (only when ``security`` is None).
    """
    resolved = security if security is not None else kafka_security_from_env(os.environ)
    if resolved.sasl_password:
        _REDACT.add(resolved.sasl_password)
    logger.debug("Kafka client for %s: %s", bootstrap, resolved.describe())
    return {"bootstrap_servers": bootstrap.split(","), **resolved.client_config()}


#: Consumers read whole batches of large frames; a single fetch may return this much per partition.
CONSUMER_MAX_PARTITION_FETCH_BYTES = FRAMES_MAX_MESSAGE_BYTES + 1024 * 1024


def make_producer(
    bootstrap: str,
    *,
    client_id: str,
    max_request_size: int = FRAMES_MAX_MESSAGE_BYTES,
    linger_ms: int = 5,
    compression: str | None = "lz4",
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> KafkaProducer:
    """A producer with the delivery contract (module docstring), connecting as ``security`` says
    (default: the environment's, :func:`client_settings`); ``overrides`` are kafka-python arguments."""
    config: dict[str, Any] = {
        **client_settings(bootstrap, security),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": compression,
        "linger_ms": linger_ms,
        "max_request_size": max_request_size,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
        "max_block_ms": 10_000,
    }
    config.update(overrides)
    return KafkaProducer(**config)


def make_consumer(
    bootstrap: str,
    *,
    group_id: str | None,
    client_id: str,
    topics: Iterable[str] = (),
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer with the delivery contract (module docstring), connecting as ``security`` says
    (default: the environment's, :func:`client_settings`), subscribed to ``topics`` if any;
    ``overrides`` are kafka-python arguments.

    Raises:
        ConfigError: a group consumer, and the installed kafka-python is not a release that
            :mod:`faceflow.kafka.compat` fits.
    """
    config: dict[str, Any] = {
        **client_settings(bootstrap, security),
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": CONSUMER_MAX_PARTITION_FETCH_BYTES,
        "fetch_max_bytes": 4 * CONSUMER_MAX_PARTITION_FETCH_BYTES,
        "isolation_level": "read_committed",
    }
    config.update(overrides)
    if group_id is not None:
        compat.apply()  # kafka-python 3.0's group coordinator needs two fixes (faceflow.kafka.compat)
    consumer = KafkaConsumer(**config)
    topic_list = list(topics)
    if topic_list:
        consumer.subscribe(topic_list)
    return consumer


def group_consumer(
    bootstrap: str,
    *,
    group_id: str,
    client_id: str,
    instance_id: str = "",
    session_timeout_ms: int,
    assignor: CooperativeStickyAssignor | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer-group member as every faceflow service runs one: :func:`make_consumer` with the
    cooperative-sticky assignor (a rebalance moves only the partitions that change owner), static
    membership when ``instance_id`` is given, and a heartbeat a tenth of the session timeout
    (at least a second). Not subscribed: the caller's loop subscribes with its rebalance listener.
    ``assignor``: a cooperative-sticky instance of the caller's (e.g. one that advertises the
    member's address, :class:`faceflow.kafka.membership.AdvertisingAssignor`)."""
    return make_consumer(
        bootstrap,
        group_id=group_id,
        client_id=client_id,
        partition_assignment_strategy=[assignor if assignor is not None else CooperativeStickyAssignor],
        group_instance_id=instance_id or None,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(1000, session_timeout_ms // 10),
        **overrides,
    )


def header_dict(headers: HeaderList | None) -> Mapping[str, bytes]:
    """Kafka record headers as a dict (the last value wins for a repeated key)."""
    return {key: value for key, value in (headers or [])}


def wait_for_topics(
    producer: KafkaProducer, topics: Iterable[str], *, bootstrap: str, timeout_s: float
) -> dict[str, int]:
    """Wait until the broker answers and every topic exists; return their partition counts.

    Raises:
        ServiceStartError: the broker did not answer, or a topic is missing, within ``timeout_s``.
    """
    import time  # noqa: PLC0415

    from kafka.errors import KafkaTimeoutError  # noqa: PLC0415

    from faceflow.errors import ServiceStartError  # noqa: PLC0415

    wanted = list(topics)
    found: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for topic in wanted:
            if topic in found:
                continue
            try:
                partitions = producer.partitions_for(topic)
            except KafkaTimeoutError:
                partitions = None
            if partitions:
                found[topic] = len(partitions)
        if len(found) == len(wanted):
            return found
        if time.monotonic() >= deadline:
            missing = [t for t in wanted if t not in found]
            raise ServiceStartError(
                f"the Kafka broker at {bootstrap} did not report topics {missing} within {timeout_s:.0f} s: "
                "is the broker up (faceflow dev up) and are the topics created?"
            )
        time.sleep(0.2)

"""Reading the files that environment variables name: secrets, PEM certificates, key pairs.

Standard library only, below every layer that reads them: the gRPC security of
:mod:`faceflow.service.security` and the Kafka clients' TLS and SASL settings of
:mod:`faceflow.kafka.clients`. Every problem is a :class:`~faceflow.errors.ConfigError` of one line
naming the variable and the path; no message ever shows a secret or a key.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path

from faceflow.errors import ConfigError

CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
KEY_MARKERS = (
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN RSA PRIVATE KEY-----",
    b"-----BEGIN EC PRIVATE KEY-----",
)
ENCRYPTED_KEY_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")


def read_file_bytes(variable: str, path: Path) -> bytes:
    """The bytes of ``path`` (named by ``variable``).

    Raises:
        ConfigError: one line naming the variable, the path and why it cannot be read.
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{variable}={path}: cannot read it: {exc.strerror or type(exc).__name__}"
        ) from None


def env_setting(env: Mapping[str, str], variable: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = env.get(variable, "").strip()
    return value or None


def read_secret_file(variable: str, path: Path) -> str:
    """The secret held in ``path`` (named by ``variable``), with one trailing newline stripped.

    Raises:
        ConfigError: the file cannot be read, is empty, is not UTF-8, or holds characters other
            than visible ASCII (the message never shows the secret).
    """
    data = read_file_bytes(variable, path)
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
    data = read_file_bytes(variable, path)
    if CERTIFICATE_MARKER not in data:
        raise ConfigError(
            f"{variable}={path}: expected PEM certificates ({CERTIFICATE_MARKER.decode()}), "
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
    key = read_file_bytes(key_variable, key_path)
    if any(marker in key for marker in ENCRYPTED_KEY_MARKERS):
        raise ConfigError(
            f"{key_variable}={key_path}: expected an unencrypted PEM private key, got an encrypted one"
        )
    if not any(marker in key for marker in KEY_MARKERS):
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

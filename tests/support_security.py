"""Certificates made at test time with ``cryptography``: a CA, a server certificate for 127.0.0.1 /
localhost / faceflow-aggregator, a client certificate, and a client certificate from another CA.

:func:`make_certificates` writes them as PEM files (EC P-256 keys, PKCS#8, unencrypted), laid out
like the Kubernetes TLS Secrets (``ca.crt``, ``tls.crt``, ``tls.key``) plus the client files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "faceflow-aggregator", "faceflow-ingest")


@dataclass(frozen=True)
class Certificates:
    folder: Path
    ca: Path  # the CA that signed the server and the client certificate
    server_cert: Path
    server_key: Path
    server_pem: Path  # key then chain in one file (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of the above
    other_client_cert: Path  # signed by other_ca
    other_client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (
        _builder(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = _builder(common_name, ca[0].subject, key).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    )
    if server:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
        names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates(folder: Path) -> Certificates:
    """Generate every certificate into ``folder`` (created) and name the files."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca("faceflow test CA")
    other = _ca("some other CA")
    server = _leaf("faceflow-aggregator", ca, server=True)
    client = _leaf("faceflow-client", ca, server=False)
    stranger = _leaf("faceflow-client", other, server=False)
    files = {
        "ca.crt": _cert_pem(ca[0]),
        "tls.crt": _cert_pem(server[0]),
        "tls.key": _key_pem(server[1]),
        "server.pem": _key_pem(server[1]) + _cert_pem(server[0]),
        "client.crt": _cert_pem(client[0]),
        "client.key": _key_pem(client[1]),
        "other-ca.crt": _cert_pem(other[0]),
        "other-client.crt": _cert_pem(stranger[0]),
        "other-client.key": _key_pem(stranger[1]),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return Certificates(
        folder=folder,
        ca=folder / "ca.crt",
        server_cert=folder / "tls.crt",
        server_key=folder / "tls.key",
        server_pem=folder / "server.pem",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt",
        other_client_cert=folder / "other-client.crt",
        other_client_key=folder / "other-client.key",
    )

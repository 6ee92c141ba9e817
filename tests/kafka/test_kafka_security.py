"""Kafka security settings: the FACEFLOW_KAFKA_* variables, their validation, and the kafka-python
arguments every client (producer, consumer, admin) gets from them. No broker here: see
test_kafka_security_broker.py for the real SASL listeners."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from support_security import Certificates, make_certificates

from faceflow.errors import ConfigError
from faceflow.kafka import admin, clients
from faceflow.kafka.clients import KafkaSecurity, client_settings, kafka_security_from_env
from faceflow.runtime import kafka_broker
from faceflow.runtime.settings import DevSettings

PASSWORD = "pa55-word-never-logged"
PROTOCOL, MECHANISM, USERNAME, PASSWORD_FILE = (
    "FACEFLOW_KAFKA_SECURITY_PROTOCOL",
    "FACEFLOW_KAFKA_SASL_MECHANISM",
    "FACEFLOW_KAFKA_SASL_USERNAME",
    "FACEFLOW_KAFKA_SASL_PASSWORD_FILE",
)
CAFILE, CERTFILE, KEYFILE = (
    "FACEFLOW_KAFKA_SSL_CAFILE",
    "FACEFLOW_KAFKA_SSL_CERTFILE",
    "FACEFLOW_KAFKA_SSL_KEYFILE",
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def files(certs: Certificates, tmp_path: Path) -> dict[str, str]:
    password = tmp_path / "password"
    password.write_text(PASSWORD + "\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    return {
        "password": str(password),
        "empty": str(empty),
        "missing": str(tmp_path / "missing"),
        "garbage": str(garbage),
        "ca": str(certs.ca),
        "cert": str(certs.client_cert),
        "key": str(certs.client_key),
        "other_key": str(certs.server_key),
    }


def resolve(env: dict[str, str], files: dict[str, str]) -> dict[str, str]:
    return {var: value.format(**files) for var, value in env.items()}


#: The manifests' settings (k8s/base/common/mesh.env and each Deployment's user name).
MESH = {
    PROTOCOL: "SASL_SSL",
    MECHANISM: "SCRAM-SHA-512",
    USERNAME: "faceflow-ingest",
    PASSWORD_FILE: "{password}",
    CAFILE: "{ca}",
}


@pytest.mark.parametrize(
    ("env", "config", "described"),
    [
        ({}, {"security_protocol": "PLAINTEXT"}, "PLAINTEXT"),
        ({PROTOCOL: "  "}, {"security_protocol": "PLAINTEXT"}, "PLAINTEXT"),
        (
            {PROTOCOL: "sasl_plaintext", MECHANISM: "plain", USERNAME: "alice", PASSWORD_FILE: "{password}"},
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "alice",
                "sasl_plain_password": PASSWORD,
            },
            "SASL_PLAINTEXT, PLAIN as alice",
        ),
        (
            MESH,
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "faceflow-ingest",
                "sasl_plain_password": PASSWORD,
                "ssl_check_hostname": True,
                "ssl_cafile": "{ca}",
            },
            "SASL_SSL, SCRAM-SHA-512 as faceflow-ingest, CA {ca}",
        ),
        (
            {PROTOCOL: "SSL", CAFILE: "{ca}", CERTFILE: "{cert}", KEYFILE: "{key}"},
            {
                "security_protocol": "SSL",
                "ssl_check_hostname": True,
                "ssl_cafile": "{ca}",
                "ssl_certfile": "{cert}",
                "ssl_keyfile": "{key}",
            },
            "SSL, CA {ca}, client certificate {cert}",
        ),
        ({PROTOCOL: "SSL"}, {"security_protocol": "SSL", "ssl_check_hostname": True}, "SSL, system CAs"),
    ],
)
def test_variables_map_onto_kafka_python_arguments(
    files: dict[str, str], env: dict[str, str], config: dict[str, Any], described: str
) -> None:
    security = kafka_security_from_env(resolve(env, files))
    expected = {
        k: v.format(**files) if isinstance(v, str) and k != "sasl_plain_password" else v
        for k, v in config.items()
    }
    assert security.client_config() == expected
    assert security.describe() == described.format(**files)
    assert PASSWORD not in security.describe() and PASSWORD not in repr(security)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {PROTOCOL: "TLS"},
            f"^{PROTOCOL}: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'$",
        ),
        (
            {PROTOCOL: "SASL_SSL", USERNAME: "alice", PASSWORD_FILE: "{password}"},
            f"^{MECHANISM}: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with {PROTOCOL}=SASL_SSL, "
            "got nothing$",
        ),
        (
            {PROTOCOL: "SASL_SSL", MECHANISM: "GSSAPI", USERNAME: "alice", PASSWORD_FILE: "{password}"},
            f"^{MECHANISM}: expected one of PLAIN, .* got 'GSSAPI'$",
        ),
        (
            {PROTOCOL: "SASL_PLAINTEXT", MECHANISM: "PLAIN", PASSWORD_FILE: "{password}"},
            f"^{USERNAME}: expected the SASL user name with {PROTOCOL}=SASL_PLAINTEXT, got nothing$",
        ),
        (
            {PROTOCOL: "SASL_PLAINTEXT", MECHANISM: "PLAIN", USERNAME: "alice"},
            f"^{PASSWORD_FILE}: expected a file holding the password of SASL user 'alice' "
            f"with {PROTOCOL}=SASL_PLAINTEXT, got nothing$",
        ),
        (
            {MECHANISM: "SCRAM-SHA-512", USERNAME: "alice"},
            f"^{MECHANISM}, {USERNAME} set: expected {PROTOCOL}=SASL_PLAINTEXT or SASL_SSL to use them, "
            "got PLAINTEXT$",
        ),
        (
            {PROTOCOL: "SASL_PLAINTEXT", MECHANISM: "PLAIN", USERNAME: "a", PASSWORD_FILE: "{password}",
             CAFILE: "{ca}"},
            f"^{CAFILE} set: expected {PROTOCOL}=SSL or SASL_SSL to use them, got SASL_PLAINTEXT$",
        ),
        (
            {PROTOCOL: "SSL", CERTFILE: "{cert}"},
            f"^expected both {CERTFILE} and {KEYFILE}, or neither, got only {CERTFILE}$",
        ),
        (
            {PROTOCOL: "SASL_SSL", MECHANISM: "PLAIN", USERNAME: "a", PASSWORD_FILE: "{missing}"},
            f"^{PASSWORD_FILE}=.*/missing: cannot read it: No such file or directory$",
        ),
        (
            {PROTOCOL: "SASL_SSL", MECHANISM: "PLAIN", USERNAME: "a", PASSWORD_FILE: "{empty}"},
            f"^{PASSWORD_FILE}=.*/empty: expected a secret, got an empty file$",
        ),
        ({PROTOCOL: "SSL", CAFILE: "{garbage}"}, f"^{CAFILE}=.*/garbage.crt: expected PEM certificates"),
        ({PROTOCOL: "SSL", CAFILE: "{missing}"}, f"^{CAFILE}=.*/missing: cannot read it"),
        (
            {PROTOCOL: "SSL", CERTFILE: "{cert}", KEYFILE: "{other_key}"},
            f"^{KEYFILE}=.*: expected the private key of the certificate in {CERTFILE}=",
        ),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_config_errors(
    files: dict[str, str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        kafka_security_from_env(resolve(env, files))
    assert "\n" not in str(caught.value) and PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "sasl_ssl"}, f"^{PROTOCOL}: expected one of"),
        (
            {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
            f"^{USERNAME}: expected",
        ),
        ({"sasl_password": "x"}, f"^{PASSWORD_FILE} set: expected"),
        ({"ssl_cafile": Path("/ca.crt")}, f"^{CAFILE} set: expected {PROTOCOL}=SSL or SASL_SSL"),
        ({"protocol": "SSL", "ssl_keyfile": Path("/k")}, f"got only {KEYFILE}$"),
    ],
)
def test_kafka_security_validates_itself(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaSecurity(**kwargs)


def test_every_client_factory_starts_from_the_same_settings(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer, consumer and admin factories all start from client_settings, which reads the
    environment when given no security and never logs the password."""
    for var, value in resolve(MESH, files).items():
        monkeypatch.setenv(var, value)
    caplog.set_level(logging.DEBUG, logger="faceflow.kafka")
    settings = client_settings("a:9093,b:9093")
    assert settings["bootstrap_servers"] == ["a:9093", "b:9093"]
    assert settings["security_protocol"] == "SASL_SSL" and settings["sasl_plain_password"] == PASSWORD
    assert "SASL_SSL, SCRAM-SHA-512 as faceflow-ingest" in caplog.text and PASSWORD not in caplog.text

    made: list[dict[str, Any]] = []

    class Capture:
        def __init__(self, **config: Any) -> None:
            made.append(config)

        def subscribe(self, topics: list[str]) -> None:
            pass

    monkeypatch.setattr(clients, "KafkaProducer", Capture)
    monkeypatch.setattr(clients, "KafkaConsumer", Capture)
    monkeypatch.setattr(admin, "KafkaAdminClient", Capture)
    clients.make_producer("a:9093,b:9093", client_id="p")
    clients.make_consumer("a:9093,b:9093", group_id="g", client_id="c", topics=["t"])
    admin.admin_client("a:9093,b:9093")
    clients.make_producer("a:9093", client_id="p2", security=KafkaSecurity(protocol="SSL"))
    assert len(made) == 4
    for config in made[:3]:
        assert {k: config[k] for k in settings} == settings
    assert made[3]["security_protocol"] == "SSL" and "sasl_plain_password" not in made[3]


def test_a_bad_environment_stops_a_client_factory_with_the_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PROTOCOL, "SASL_SSL")
    with pytest.raises(ConfigError, match=f"^{MECHANISM}: expected one of"):
        clients.make_producer("127.0.0.1:1", client_id="p")
    with pytest.raises(ConfigError, match=f"^{MECHANISM}: expected one of"):
        clients.make_consumer("127.0.0.1:1", group_id=None, client_id="c")
    with pytest.raises(ConfigError, match=f"^{MECHANISM}: expected one of"):
        admin.admin_client("127.0.0.1:1")


# -- the local broker's opt-in SASL listener (runtime/kafka_broker.py) -----------------------------


def test_the_sasl_listener_replaces_only_the_client_listener(tmp_path: Path) -> None:
    s = DevSettings(home=tmp_path, cache=tmp_path, kafka_port=19092, controller_port=19093)
    default = dict(line.split("=", 1) for line in kafka_broker.broker_properties(s, tmp_path).splitlines())
    assert default["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    listener = kafka_broker.SaslListener(
        users={"admin": "a-pw", "alice": "b-pw"},
        mechanisms=("SCRAM-SHA-512", "PLAIN"),
        keystore=tmp_path / "server.pem",
        truststore=tmp_path / "ca.crt",
    )
    text = kafka_broker.sasl_broker_properties(s, tmp_path, listener)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="admin" password="a-pw" user_admin="a-pw" user_alice="b-pw";'
    )
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    )
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(tmp_path / "server.pem")
    assert {
        k: v for k, v in props.items() if not k.startswith(("listener", "advertised", "inter.broker", "sasl"))
    } == {k: v for k, v in default.items() if not k.startswith(("listener", "advertised", "inter.broker"))}
    assert kafka_broker._scram_arguments(listener) == [
        "--add-scram", "SCRAM-SHA-512=[name=admin,password=a-pw]",
        "--add-scram", "SCRAM-SHA-512=[name=alice,password=b-pw]",
    ]  # fmt: skip
    assert kafka_broker._scram_arguments(None) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mechanisms": ("GSSAPI",)}, r"^mechanisms: expected some of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ({"mechanisms": ()}, "^mechanisms: expected some of"),
        (
            {"inter_broker_user": "root"},
            r"^inter_broker_user: expected one of the users \['admin'\], got 'root'$",
        ),
        ({"keystore": Path("/k.pem")}, r"^keystore, truststore: expected both \(SASL_SSL\) or neither"),
        ({"users": {"admin": 'x"y'}}, r"^users: expected names and passwords of letters, digits"),
    ],
)
def test_the_sasl_listener_validates_itself(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        kafka_broker.SaslListener(**({"users": {"admin": "pw"}} | kwargs))
    assert 'x"y' not in str(caught.value)

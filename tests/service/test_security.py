"""gRPC transport security and the bearer token: settings from the environment, and a real
GrpcServer over real sockets with certificates generated at test time (TLS, mTLS, tokens on every
kind of method, health exempt, reflection not, refusals counted)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support_security import Certificates, make_certificates

from faceflow.errors import ConfigError, PermissionDenied, Unauthenticated
from faceflow.service.grpc_server import GrpcServer, ServerSettings, ServiceBinding
from faceflow.service.metrics import ServiceMetrics
from faceflow.service.security import (
    ClientSecurity,
    ServerSecurity,
    channel_for,
    check_bearer,
    client_security_from_env,
    refusing_handler,
    server_security_from_env,
)
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, ingest_pb2, ingest_pb2_grpc

TIMEOUT = 10
TOKEN = "s3cret-token-0123456789abcdef"
WRONG = "not-the-token-987654321"
AGGREGATOR = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"].full_name
INGEST = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def token_file(folder: Path, content: bytes = TOKEN.encode() + b"\n", name: str = "token") -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


# -- settings from the environment ---------------------------------------------------------------


def test_no_variables_mean_plaintext_without_a_token() -> None:
    security = server_security_from_env({})
    assert (security.tls, security.mutual_tls, security.token) == (False, False, None)
    assert security.interceptors() == ()
    assert security.describe() == "plaintext, no token"


@pytest.mark.parametrize(
    ("names", "described"),
    [
        ({"FACEFLOW_TLS_CERT_FILE": "server_cert", "FACEFLOW_TLS_KEY_FILE": "server_key"}, "TLS, no token"),
        (
            {"FACEFLOW_TLS_CERT_FILE": "server_cert", "FACEFLOW_TLS_KEY_FILE": "server_key",
             "FACEFLOW_TLS_CLIENT_CA_FILE": "ca", "FACEFLOW_AUTH_TOKEN_FILE": "token"},
            "TLS (client certificates required), bearer token",
        ),
        ({"FACEFLOW_AUTH_TOKEN_FILE": "token"}, "plaintext, bearer token"),
        ({"FACEFLOW_AUTH_TOKEN_FILE": "token", "FACEFLOW_TLS_CA_FILE": "ca"}, "plaintext, bearer token"),
    ],
)  # fmt: skip
def test_server_settings_from_the_environment(
    certs: Certificates, tmp_path: Path, names: dict[str, str], described: str
) -> None:
    files = {"server_cert": certs.server_cert, "server_key": certs.server_key, "ca": certs.ca}
    files["token"] = token_file(tmp_path)
    security = server_security_from_env({var: str(files[what]) for var, what in names.items()})
    assert security.describe() == described
    assert TOKEN not in security.describe() and TOKEN not in repr(security)
    assert "PRIVATE" not in repr(security)
    if "token" in names.values():
        assert security.token == TOKEN  # one trailing newline stripped
        assert len(security.interceptors()) == 1 and TOKEN not in repr(security.interceptors()[0])


def encrypted_key(certs: Certificates, folder: Path) -> Path:
    key = serialization.load_pem_private_key(certs.server_key.read_bytes(), password=None)
    path = folder / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    return path


CERT, KEY, CLIENT_CA, TOKEN_FILE = (
    "FACEFLOW_TLS_CERT_FILE",
    "FACEFLOW_TLS_KEY_FILE",
    "FACEFLOW_TLS_CLIENT_CA_FILE",
    "FACEFLOW_AUTH_TOKEN_FILE",
)
PAIR = {CERT: "{server_cert}", KEY: "{server_key}"}
BROKEN_PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({CERT: "{server_cert}"}, f"^expected both {CERT} and {KEY}, or neither, got only {CERT}$"),
        ({KEY: "{server_key}"}, f"^expected both {CERT} and {KEY}, or neither, got only {KEY}$"),
        ({CLIENT_CA: "{ca}"}, f"^{CLIENT_CA} is set: expected {CERT} and {KEY} as well"),
        (PAIR | {CERT: "{missing}"}, f"^{CERT}=.*/missing.crt: cannot read it: No such file or directory$"),
        (
            PAIR | {CERT: "{garbage}"},
            rf"^{CERT}=.*/garbage.pem: expected PEM certificates \(-----BEGIN CERTIFICATE-----\), "
            "got none in 16 bytes$",
        ),
        (
            PAIR | {CERT: "{broken}"},
            f"^{CERT}=.*/broken.crt: expected PEM certificates, got ones that do not parse",
        ),
        (
            PAIR | {KEY: "{server_cert}"},
            rf"^{KEY}=.*/tls.crt: expected a PEM private key \(-----BEGIN PRIVATE KEY-----\), got none",
        ),
        (
            PAIR | {KEY: "{client_key}"},
            rf"^{KEY}=.*/client.key: expected the private key of the certificate in {CERT}=.*/tls.crt, "
            r"got one that does not match or parse \(.+\)$",
        ),
        (
            PAIR | {KEY: "{encrypted}"},
            f"^{KEY}=.*/encrypted.key: expected an unencrypted PEM private key, got an encrypted one$",
        ),
        (PAIR | {CLIENT_CA: "{garbage}"}, f"^{CLIENT_CA}=.*/garbage.pem: expected PEM certificates"),
        ({TOKEN_FILE: "{empty}"}, f"^{TOKEN_FILE}=.*/empty: expected a secret, got an empty file$"),
        ({TOKEN_FILE: "{newline}"}, f"^{TOKEN_FILE}=.*/newline: expected a secret, got an empty file$"),
        (
            {TOKEN_FILE: "{spaced}"},
            rf"^{TOKEN_FILE}=.*/spaced: expected one line of visible ASCII \(no spaces\), "
            r"got 2 other byte\(s\) in 22 \(the secret is not shown\)$",
        ),
        ({TOKEN_FILE: "{missing}"}, f"^{TOKEN_FILE}=.*/missing.crt: cannot read it"),
    ],
)
def test_bad_server_settings_are_one_line_config_errors(
    certs: Certificates, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    files = {
        "server_cert": certs.server_cert,
        "server_key": certs.server_key,
        "client_key": certs.client_key,
        "ca": certs.ca,
        "missing": tmp_path / "missing.crt",
        "garbage": token_file(tmp_path, b"not a pem file\r\n", "garbage.pem"),
        "broken": token_file(tmp_path, BROKEN_PEM, "broken.crt"),
        "encrypted": encrypted_key(certs, tmp_path),
        "empty": token_file(tmp_path, b"", "empty"),
        "newline": token_file(tmp_path, b"\n", "newline"),
        "spaced": token_file(tmp_path, b"two words\tin-one-token\n", "spaced"),
    }
    resolved = {var: value.format(**{k: str(v) for k, v in files.items()}) for var, value in env.items()}
    with pytest.raises(ConfigError, match=message) as caught:
        server_security_from_env(resolved)
    text = str(caught.value)
    assert "\n" not in text and "PRIVATE KEY-----\n" not in text and "two words" not in text


BEGIN_CERT, BEGIN_KEY = b"-----BEGIN CERTIFICATE-----", b"-----BEGIN PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"certificate_chain": BEGIN_CERT}, "^expected both certificate_chain and private_key, or neither"),
        ({"private_key": BEGIN_KEY}, "got only private_key$"),
        ({"client_ca": BEGIN_CERT}, "^client_ca: expected a server certificate and key as well"),
        (
            {"certificate_chain": b"garbage", "private_key": BEGIN_KEY},
            "^certificate_chain: expected a certificate in PEM, got 7 bytes without one$",
        ),
        (
            {"certificate_chain": "text", "private_key": b"x"},
            "^certificate_chain: expected PEM bytes, got str$",
        ),
        ({"token": ""}, "^token: expected a non-empty string"),
        (
            {"token": "with space"},
            r"^token: expected visible ASCII without spaces, got other characters \(not shown\)$",
        ),
    ],
)
def test_server_security_validates_itself(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerSecurity(**kwargs)


CA_FILE, CLIENT_CERT, CLIENT_KEY, SERVER_NAME = (
    "FACEFLOW_TLS_CA_FILE",
    "FACEFLOW_TLS_CLIENT_CERT_FILE",
    "FACEFLOW_TLS_CLIENT_KEY_FILE",
    "FACEFLOW_TLS_SERVER_NAME",
)


@pytest.mark.parametrize(
    ("names", "described"),
    [
        ({}, "plaintext, no token"),
        ({TOKEN_FILE: "token"}, "plaintext, bearer token"),
        ({CA_FILE: "ca"}, "TLS, no token"),
        (
            {CA_FILE: "ca", SERVER_NAME: "faceflow-aggregator", TOKEN_FILE: "token"},
            "TLS as faceflow-aggregator, bearer token",
        ),
        (
            {CA_FILE: "ca", CLIENT_CERT: "client_cert", CLIENT_KEY: "client_key"},
            "TLS (client certificate), no token",
        ),
        ({CERT: "client_cert", CLIENT_CA: "ca"}, "plaintext, no token"),  # the server's variables
    ],
)
def test_client_settings_from_the_environment(
    certs: Certificates, tmp_path: Path, names: dict[str, str], described: str
) -> None:
    files = {"ca": certs.ca, "client_cert": certs.client_cert, "client_key": certs.client_key}
    files["token"] = token_file(tmp_path)
    security = client_security_from_env({var: str(files.get(what, what)) for var, what in names.items()})
    assert security.describe() == described
    assert TOKEN not in repr(security)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {CLIENT_CERT: "{client_cert}"},
            f"^expected both {CLIENT_CERT} and {CLIENT_KEY}, or neither, got only {CLIENT_CERT}$",
        ),
        (
            {CLIENT_CERT: "{client_cert}", CLIENT_KEY: "{server_key}"},
            f"^{CLIENT_KEY}=.*: expected the private key of the certificate in {CLIENT_CERT}",
        ),
        ({CA_FILE: "{missing}"}, f"^{CA_FILE}=.*/x: cannot read it"),
        (
            {SERVER_NAME: "faceflow-aggregator"},
            rf"^{SERVER_NAME} is set: expected {CA_FILE} \(TLS\) as well, got plaintext$",
        ),
    ],
)
def test_bad_client_settings_are_config_errors(
    certs: Certificates, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    files = {"client_cert": certs.client_cert, "server_key": certs.server_key, "missing": tmp_path / "x"}
    resolved = {var: value.format(**{k: str(v) for k, v in files.items()}) for var, value in env.items()}
    with pytest.raises(ConfigError, match=message):
        client_security_from_env(resolved)


AUTH = "authorization"
NOT_THE_ONE = "^the bearer token is not the one this service accepts$"


@pytest.mark.parametrize(
    ("metadata", "refusal", "message"),
    [
        (None, Unauthenticated, "^no authorization metadata: expected 'authorization: Bearer <token>'$"),
        ([("x-other", "1")], Unauthenticated, "^no authorization metadata"),
        (
            [(AUTH, f"Basic {WRONG}")],
            Unauthenticated,
            r"^authorization metadata: expected 'Bearer <token>', got another form \(not shown\)$",
        ),
        ([(AUTH, "Bearer")], Unauthenticated, "expected 'Bearer <token>'"),
        ([(AUTH, "Bearer   ")], Unauthenticated, "expected 'Bearer <token>'"),
        (
            [(AUTH, f"Bearer {TOKEN}"), (AUTH, f"Bearer {TOKEN}")],
            Unauthenticated,
            "^expected one authorization metadata entry, got 2$",
        ),
        ([(AUTH, f"Bearer {WRONG}")], PermissionDenied, NOT_THE_ONE),
        ([(AUTH, f"Bearer {TOKEN}x")], PermissionDenied, NOT_THE_ONE),
        ([(AUTH, "Bearer pässwörd")], PermissionDenied, NOT_THE_ONE),
        ([(AUTH, f"Bearer {TOKEN}")], None, None),
        ([(AUTH, f"bearer {TOKEN}")], None, None),  # the scheme is case-insensitive (RFC 7235)
        ([("x-other", "1"), (AUTH, f"Bearer  {TOKEN} ")], None, None),
    ],
)
def test_check_bearer(metadata: Any, refusal: type[Exception] | None, message: str | None) -> None:
    if refusal is None:
        check_bearer(metadata, TOKEN)
        return
    with pytest.raises(refusal, match=message) as caught:
        check_bearer(metadata, TOKEN)
    assert WRONG not in str(caught.value) and TOKEN not in str(caught.value)


@pytest.mark.parametrize("kind", ["unary_unary", "unary_stream", "stream_unary", "stream_stream"])
def test_a_refusing_handler_keeps_the_kind_and_the_serializers(kind: str) -> None:
    def behavior(request: Any, context: Any) -> Any:
        return request

    make = getattr(grpc, f"{kind}_rpc_method_handler")
    handler = make(
        behavior,
        request_deserializer=aggregator_pb2.GetStreamRequest.FromString,
        response_serializer=aggregator_pb2.GetStreamResponse.SerializeToString,
    )
    refusing = refusing_handler(handler, Unauthenticated("no"))
    assert (refusing.request_streaming, refusing.response_streaming) == (
        handler.request_streaming,
        handler.response_streaming,
    )
    assert refusing.request_deserializer is handler.request_deserializer
    assert refusing.response_serializer is handler.response_serializer
    behaviour = getattr(refusing, kind)
    assert behaviour is not getattr(handler, kind)
    with pytest.raises(Unauthenticated, match=r"^no$"):
        result = behaviour(None, None)
        next(iter(result))


# -- a real GrpcServer over real sockets ------------------------------------------------------------


class Aggregator(aggregator_pb2_grpc.AggregatorServicer):
    def GetStream(self, request: Any, context: Any) -> aggregator_pb2.GetStreamResponse:  # noqa: N802
        return aggregator_pb2.GetStreamResponse(stream=aggregator_pb2.StreamInfo(stream_id=request.stream_id))

    def Subscribe(self, request: Any, context: Any) -> Iterator[aggregator_pb2.SubscribeResponse]:  # noqa: N802
        yield aggregator_pb2.SubscribeResponse(offset=7)


class Ingest(ingest_pb2_grpc.IngestServicer):
    def PushFrames(self, request_iterator: Any, context: Any) -> ingest_pb2.PushFramesResponse:  # noqa: N802
        return ingest_pb2.PushFramesResponse(accepted=sum(1 for _ in request_iterator))


@dataclass
class Served:
    server: GrpcServer
    metrics: ServiceMetrics
    port: int

    def refusals(self, method: str, code: str) -> float:
        labels = rf'(?=[^}}]*code="{code}")(?=[^}}]*method="{method}")'
        pattern = rf"^faceflow_grpc_refused_total\{{{labels}[^}}]*\}} (\S+)$"
        found = re.search(pattern, self.metrics.render(), re.MULTILINE)
        return float(found.group(1)) if found else 0.0


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(security: ServerSecurity) -> Served:
        metrics = ServiceMetrics("faceflow-test")
        server = GrpcServer(
            "test",
            ServerSettings(host="127.0.0.1", port=0, workers=4),
            [
                ServiceBinding(
                    AGGREGATOR, aggregator_pb2_grpc.add_AggregatorServicer_to_server, Aggregator()
                ),
                ServiceBinding(INGEST, ingest_pb2_grpc.add_IngestServicer_to_server, Ingest()),
            ],
            metrics=metrics,
            security=security,
        )
        served = Served(server, metrics, server.start())
        started.append(served)
        return served

    yield start
    for served in started:
        served.server.stop(0).wait(5)


def tls_server(certs: Certificates, *, mtls: bool = False, token: str | None = None) -> ServerSecurity:
    return ServerSecurity(
        certificate_chain=certs.server_cert.read_bytes(),
        private_key=certs.server_key.read_bytes(),
        client_ca=certs.ca.read_bytes() if mtls else None,
        token=token,
    )


def tls_client(certs: Certificates, *, token: str | None = None, client: str | None = None) -> ClientSecurity:
    chain = key = None
    if client == "ours":
        chain, key = certs.client_cert.read_bytes(), certs.client_key.read_bytes()
    elif client == "other CA":
        chain, key = certs.other_client_cert.read_bytes(), certs.other_client_key.read_bytes()
    return ClientSecurity(
        root_certificates=certs.ca.read_bytes(), certificate_chain=chain, private_key=key, token=token
    )


def get_stream(channel: grpc.Channel, **kwargs: Any) -> str:
    reply = aggregator_pb2_grpc.AggregatorStub(channel).GetStream(
        aggregator_pb2.GetStreamRequest(stream_id="cam-1"), timeout=TIMEOUT, **kwargs
    )
    return str(reply.stream.stream_id)


def health_check(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
    )
    return int(reply.status)


def list_services(channel: grpc.Channel, **kwargs: Any) -> set[str]:
    (answer,) = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT, **kwargs
    )
    return {s.name for s in answer.list_services_response.service}


def subscribe(channel: grpc.Channel, **kwargs: Any) -> list[int]:
    call = aggregator_pb2_grpc.AggregatorStub(channel).Subscribe(
        aggregator_pb2.SubscribeRequest(), timeout=TIMEOUT, **kwargs
    )
    return [item.offset for item in call]


def push(channel: grpc.Channel, **kwargs: Any) -> int:
    requests = iter([ingest_pb2.PushFramesRequest(stream_id="s", image=b"x")] * 3)
    return int(ingest_pb2_grpc.IngestStub(channel).PushFrames(requests, timeout=TIMEOUT, **kwargs).accepted)


#: One call of each kind: unary, server streaming, client streaming, bidirectional (reflection).
CALLS = {
    "GetStream": (get_stream, "cam-1"),
    "Subscribe": (subscribe, [7]),
    "PushFrames": (push, 3),
    "ServerReflectionInfo": (list_services, {AGGREGATOR, INGEST, "grpc.health.v1.Health", REFLECTION}),
}


def code_of(call: Any, *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value.code(), caught.value.details() or ""


def test_tls_serves_a_client_that_trusts_the_ca(certs: Certificates, serve: Any) -> None:
    served = serve(tls_server(certs))
    assert served.server.security.describe() == "TLS, no token"
    for target in (f"127.0.0.1:{served.port}", f"localhost:{served.port}"):
        with channel_for(target, tls_client(certs)) as channel:
            assert get_stream(channel) == "cam-1"
            assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING


def test_tls_refuses_plaintext_and_a_client_that_trusts_another_ca(certs: Certificates, serve: Any) -> None:
    served = serve(tls_server(certs))
    target = f"127.0.0.1:{served.port}"
    with channel_for(target, ClientSecurity()) as plaintext:
        assert code_of(get_stream, plaintext)[0] is grpc.StatusCode.UNAVAILABLE
        assert code_of(health_check, plaintext)[0] is grpc.StatusCode.UNAVAILABLE
    with channel_for(target, ClientSecurity(root_certificates=certs.other_ca.read_bytes())) as distrusting:
        assert code_of(get_stream, distrusting)[0] is grpc.StatusCode.UNAVAILABLE


def test_a_server_name_override_verifies_another_name_in_the_certificate(
    certs: Certificates, serve: Any
) -> None:
    served = serve(tls_server(certs))
    target = f"127.0.0.1:{served.port}"
    named = ClientSecurity(root_certificates=certs.ca.read_bytes(), server_name="faceflow-aggregator")
    with channel_for(target, named) as channel:
        assert get_stream(channel) == "cam-1"
    unnamed = ClientSecurity(root_certificates=certs.ca.read_bytes(), server_name="not-in-the-certificate")
    with channel_for(target, unnamed) as channel:
        assert code_of(get_stream, channel)[0] is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("client", "served_ok"),
    [(None, False), ("other CA", False), ("ours", True)],
    ids=["no client certificate", "certificate from another CA", "certificate from the client CA"],
)
def test_mtls_requires_a_client_certificate_from_the_client_ca(
    certs: Certificates, serve: Any, client: str | None, served_ok: bool
) -> None:
    served = serve(tls_server(certs, mtls=True))
    assert served.server.security.describe() == "TLS (client certificates required), no token"
    with channel_for(f"127.0.0.1:{served.port}", tls_client(certs, client=client)) as channel:
        if served_ok:
            assert get_stream(channel) == "cam-1"
            assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
        else:
            assert code_of(get_stream, channel)[0] is grpc.StatusCode.UNAVAILABLE
            assert code_of(health_check, channel)[0] is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("transport", ["TLS", "plaintext"])
@pytest.mark.parametrize("method", list(CALLS))
def test_every_kind_of_call_needs_the_token(
    certs: Certificates, serve: Any, caplog: pytest.LogCaptureFixture, transport: str, method: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server = tls_server(certs, token=TOKEN) if transport == "TLS" else ServerSecurity(token=TOKEN)
    served = serve(server)
    target = f"127.0.0.1:{served.port}"

    def client(token: str | None) -> ClientSecurity:
        return tls_client(certs, token=token) if transport == "TLS" else ClientSecurity(token=token)

    call, expected = CALLS[method]
    with channel_for(target, client(None)) as anonymous:
        code, details = code_of(call, anonymous)
        assert (code, details) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "no authorization metadata: expected 'authorization: Bearer <token>'",
        )
        code, details = code_of(call, anonymous, metadata=[("authorization", f"Basic {WRONG}")])
        assert code is grpc.StatusCode.UNAUTHENTICATED and WRONG not in details
        assert health_check(anonymous) == health_pb2.HealthCheckResponse.SERVING  # health is exempt
    with channel_for(target, client(WRONG)) as wrong:
        code, details = code_of(call, wrong)
        assert (code, details) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "the bearer token is not the one this service accepts",
        )
    with channel_for(target, client(TOKEN)) as right:
        assert call(right) == expected
        assert health_check(right) == health_pb2.HealthCheckResponse.SERVING
    assert served.refusals(method, "UNAUTHENTICATED") == 2
    assert served.refusals(method, "PERMISSION_DENIED") == 1
    assert served.refusals("Check", "UNAUTHENTICATED") == 0
    assert TOKEN not in caplog.text and WRONG not in caplog.text


def test_the_start_up_log_says_what_is_on_and_never_the_token(
    certs: Certificates, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    serve(tls_server(certs, mtls=True, token=TOKEN))
    assert "TLS (client certificates required), bearer token" in caplog.text
    assert TOKEN not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_a_method_that_does_not_exist_is_unimplemented_before_the_token_is_checked(
    certs: Certificates, serve: Any
) -> None:
    served = serve(tls_server(certs, token=TOKEN))
    with channel_for(f"127.0.0.1:{served.port}", tls_client(certs)) as channel:
        missing = channel.unary_unary("/faceflow.v1.Aggregator/NoSuchMethod")
        assert code_of(missing, b"", timeout=TIMEOUT)[0] is grpc.StatusCode.UNIMPLEMENTED

"""Scoped bearer tokens (FACEFLOW_AUTH_TOKENS_FILE): the file's parsing, the method-to-scope table
checked against the generated descriptors, and real servers on sockets refusing a read token on
admin methods while serving it the read ones."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support_ingest import astronaut_jpeg

import faceflow.service.scopes as scopes_module
import faceflow.v1
from faceflow.errors import ConfigError, PermissionDenied, ServiceStartError, Unauthenticated
from faceflow.ingest.config import IngestConfig
from faceflow.ingest.grpc_server import IngestServer
from faceflow.ingest.producer import InMemoryFrameSink
from faceflow.ingest.service import IngestService
from faceflow.service.grpc_server import GrpcServer, ServerSettings, ServiceBinding
from faceflow.service.metrics import ServiceMetrics
from faceflow.service.security import (
    METHOD_SCOPES,
    SHARED_SUBJECT,
    BearerTokenCheck,
    ClientSecurity,
    Scope,
    ServerSecurity,
    TokenGrant,
    caller_subject,
    channel_for,
    method_scopes,
    parse_tokens,
    read_tokens_file,
)
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, ingest_pb2, ingest_pb2_grpc

TIMEOUT = 10
READER = "reader-token-0123456789abcdef"
OPERATOR = "operator-token-fedcba9876543210"
SHARED = "shared-token-00112233445566778899"
UNKNOWN = "unknown-token-aabbccddeeff0011"
SECRETS = (READER, OPERATOR, SHARED, UNKNOWN)
WHERE = "FACEFLOW_AUTH_TOKENS_FILE=/etc/tokens"
AGGREGATOR = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"].full_name
INGEST = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
HEALTH = "grpc.health.v1.Health"

TOKENS_FILE = f"""# faceflow gRPC tokens: <scope> <subject> <token>

read  watch-dashboard  {READER}
admin\tops:alice\t{OPERATOR}\r
   # an indented comment
""".encode()


def tokens_file(folder: Path, text: str | bytes = TOKENS_FILE) -> Path:
    path = folder / "tokens"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# -- the tokens file --------------------------------------------------------------------------------


def test_a_tokens_file_gives_each_client_a_scope_and_a_subject() -> None:
    grants = parse_tokens(TOKENS_FILE, WHERE)
    assert [(g.scope, g.subject, g.token) for g in grants] == [
        (Scope.READ, "watch-dashboard", READER),
        (Scope.ADMIN, "ops:alice", OPERATOR),
    ]
    assert all(token not in repr(grants) for token in SECRETS)


def test_one_subject_may_hold_two_tokens_of_one_scope() -> None:
    grants = parse_tokens(f"read cam-wall {READER}\nread cam-wall {UNKNOWN}\n".encode(), WHERE)
    assert [g.subject for g in grants] == ["cam-wall", "cam-wall"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"{WHERE}: expected at least one '<scope> <subject> <token>' line, got none"),
        ("# only comments\n\n", f"{WHERE}: expected at least one '<scope> <subject> <token>' line, got none"),
        (
            f"# tokens\nread watch {READER} extra\n",
            f"{WHERE}:2: expected '<scope> <subject> <token>', got 4 field(s) (not shown)",
        ),
        (f"{READER}\n", f"{WHERE}:1: expected '<scope> <subject> <token>', got 1 field(s) (not shown)"),
        (f"write watch {READER}\n", f"{WHERE}:1: scope: expected 'read' or 'admin', got 'write'"),
        (f"READ watch {READER}\n", f"{WHERE}:1: scope: expected 'read' or 'admin', got 'READ'"),
        (
            f"{READER} watch read\n",
            f"{WHERE}:1: scope: expected 'read' or 'admin', got another word (not shown)",
        ),
        (
            f"read watch/dashboard {READER}\n",
            f"{WHERE}:1: subject: expected 1 to 64 letters, digits or ._@:+- (starting with a letter "
            "or a digit), got another word (not shown)",
        ),
        (
            f"read {'x' * 65} {READER}\n",
            f"{WHERE}:1: subject: expected 1 to 64 letters, digits or ._@:+- (starting with a letter "
            "or a digit), got another word (not shown)",
        ),
        (
            "read watch short-token\n",
            f"{WHERE}:1: token: expected at least 16 characters, got 11 "
            "(not shown; make one with 'openssl rand -hex 32')",
        ),
        (
            f"read watch {READER}\n\nadmin ops {READER}\n",
            f"{WHERE}:3: token: expected one token per client, got the same token as line 1 (not shown)",
        ),
        (
            f"read watch {READER}\nadmin watch {OPERATOR}\n",
            f"{WHERE}:2: subject: expected one scope per subject, got admin here and read on line 1 "
            "for the same subject",
        ),
        (
            f"read watch {READER}\nread caf\u00e9 {OPERATOR}\n",
            f"{WHERE}:2: expected visible ASCII fields separated by spaces, got 2 other byte(s) "
            "(the line is not shown)",
        ),
    ],
    ids=[
        "empty",
        "only comments",
        "four fields",
        "one field",
        "unknown scope",
        "scope in capitals",
        "columns swapped",
        "subject with a slash",
        "subject too long",
        "short token",
        "duplicate token",
        "one subject two scopes",
        "not ASCII",
    ],
)
def test_a_bad_tokens_file_is_a_one_line_config_error_that_never_shows_a_token(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_tokens(text.encode(), WHERE)
    assert str(refused.value) == message
    assert "\n" not in str(refused.value) and all(token not in str(refused.value) for token in SECRETS)


def test_a_token_of_the_shared_token_file_is_a_duplicate_in_the_tokens_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(READER + "\n")
    path = tokens_file(tmp_path)
    env = {"FACEFLOW_AUTH_TOKEN_FILE": str(tmp_path / "token"), "FACEFLOW_AUTH_TOKENS_FILE": str(path)}
    with pytest.raises(ConfigError) as refused:
        ServerSecurity.from_env(env)
    assert str(refused.value) == (
        f"FACEFLOW_AUTH_TOKENS_FILE={path}:3: token: expected one token per client, got the same "
        "token as FACEFLOW_AUTH_TOKEN_FILE (not shown)"
    )


def test_an_unreadable_tokens_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        ConfigError, match=rf"^FACEFLOW_AUTH_TOKENS_FILE={re.escape(str(missing))}: cannot read it: "
    ):
        read_tokens_file("FACEFLOW_AUTH_TOKENS_FILE", missing)


def test_server_security_from_both_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SHARED + "\n")
    env = {
        "FACEFLOW_AUTH_TOKEN_FILE": str(tmp_path / "token"),
        "FACEFLOW_AUTH_TOKENS_FILE": str(tokens_file(tmp_path)),
    }
    security = ServerSecurity.from_env(env)
    assert security.token == SHARED
    assert [(g.scope, g.subject) for g in security.grants] == [
        (Scope.ADMIN, SHARED_SUBJECT),
        (Scope.READ, "watch-dashboard"),
        (Scope.ADMIN, "ops:alice"),
    ]
    assert security.describe() == "plaintext, bearer token + scoped tokens (1 admin, 1 read)"
    only_scoped = ServerSecurity.from_env({"FACEFLOW_AUTH_TOKENS_FILE": env["FACEFLOW_AUTH_TOKENS_FILE"]})
    assert (
        only_scoped.token is None and only_scoped.describe() == "plaintext, scoped tokens (1 admin, 1 read)"
    )
    (checker,) = security.interceptors((AGGREGATOR, INGEST, HEALTH, REFLECTION))
    assert all(token not in repr(x) for token in SECRETS for x in (security, checker))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"token": READER, "tokens": [TokenGrant(Scope.READ, "watch", READER)]},
            "tokens: expected each token once (with token), got one twice (not shown)",
        ),
        ({"tokens": ["read watch x"]}, "tokens: expected TokenGrant values, got another type"),
    ],
    ids=["token twice", "not a grant"],
)
def test_server_security_checks_its_grants(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        ServerSecurity(**kwargs)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"scope": "read", "subject": "watch", "token": READER},
            "scope: expected Scope.READ or Scope.ADMIN, got str",
        ),
        ({"scope": Scope.READ, "subject": "", "token": READER}, "subject: expected 1 to 64"),
        ({"scope": Scope.READ, "subject": "watch", "token": "has space"}, "token: expected visible ASCII"),
    ],
    ids=["scope as text", "empty subject", "token with a space"],
)
def test_a_token_grant_validates_itself(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(message)}"):
        TokenGrant(**kwargs)


# -- the method-to-scope table ----------------------------------------------------------------------


def faceflow_services() -> dict[str, list[str]]:
    """Every service in the generated faceflow.v1 modules, with its method names."""
    services: dict[str, list[str]] = {}
    for module in pkgutil.iter_modules(faceflow.v1.__path__):
        if module.name.endswith("_pb2"):
            generated = importlib.import_module(f"faceflow.v1.{module.name}")
            for service in generated.DESCRIPTOR.services_by_name.values():
                services[service.full_name] = [m.name for m in service.methods]
    return services


def test_the_scope_table_covers_every_method_of_every_faceflow_service_exactly() -> None:
    services = faceflow_services()
    assert set(services) == {AGGREGATOR, INGEST}  # a new service: give its methods scopes here
    for name, methods in services.items():
        assert set(METHOD_SCOPES[name]) == set(methods), name
    scopes = method_scopes((*services, HEALTH, REFLECTION))
    assert len(scopes) == sum(len(m) for m in services.values()) + 1  # + reflection; health exempt
    assert scopes["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"] is Scope.READ
    assert not any(path.startswith("/grpc.health.v1.Health/") for path in scopes)


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("Subscribe", Scope.READ),
        ("GetTrack", Scope.READ),
        ("ListTracks", Scope.READ),
        ("GetStream", Scope.READ),
        ("ListStreams", Scope.READ),
        ("ListIdentities", Scope.READ),
        ("GetIdentity", Scope.READ),
        ("EnrollIdentity", Scope.ADMIN),
        ("NameIdentity", Scope.ADMIN),
        ("ForgetIdentity", Scope.ADMIN),
    ],
)
def test_aggregator_methods_that_look_are_read_and_gallery_changes_are_admin(
    method: str, scope: Scope
) -> None:
    assert method_scopes([AGGREGATOR])[f"/{AGGREGATOR}/{method}"] is scope


@pytest.mark.parametrize(
    ("method", "scope"),
    [
        ("ListSources", Scope.READ),
        ("PushFrames", Scope.ADMIN),
        ("StartSource", Scope.ADMIN),
        ("StopSource", Scope.ADMIN),
    ],
)
def test_ingest_listing_is_read_and_feeding_or_starting_is_admin(method: str, scope: Scope) -> None:
    assert method_scopes([INGEST])[f"/{INGEST}/{method}"] is scope


def pool_with(*methods: str) -> descriptor_pool.DescriptorPool:
    """A descriptor pool holding one service ``test.v1.Camera`` with ``methods``."""
    proto = descriptor_pb2.FileDescriptorProto(name="camera_test.proto", package="test.v1")
    proto.message_type.add(name="M")
    service = proto.service.add(name="Camera")
    for name in methods:
        service.method.add(name=name, input_type=".test.v1.M", output_type=".test.v1.M")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return pool


@pytest.mark.parametrize(
    ("methods", "table", "message"),
    [
        (
            ("GetPicture", "Tilt"),
            {"test.v1.Camera": {"GetPicture": Scope.READ}},
            "/test.v1.Camera/Tilt: expected a scope in faceflow.service.scopes.METHOD_SCOPES, got none: "
            "add it as Scope.READ (it only looks) or Scope.ADMIN (it changes something)",
        ),
        (
            ("GetPicture",),
            {},
            "/test.v1.Camera/GetPicture: expected a scope in faceflow.service.scopes.METHOD_SCOPES, got "
            "none: add it as Scope.READ (it only looks) or Scope.ADMIN (it changes something)",
        ),
        (
            ("GetPicture",),
            {"test.v1.Camera": {"GetPicture": Scope.READ, "GetPhoto": Scope.READ}},
            "METHOD_SCOPES['test.v1.Camera']: expected methods of test.v1.Camera, got GetPhoto, which it "
            "does not have (renamed or removed? update the table)",
        ),
    ],
    ids=["a new method", "a new service", "a renamed method"],
)
def test_a_method_without_a_scope_or_a_stale_entry_is_refused(
    methods: tuple[str, ...], table: dict[str, dict[str, Scope]], message: str
) -> None:
    with pytest.raises(ServiceStartError) as refused:
        method_scopes(["test.v1.Camera"], table=table, pool=pool_with(*methods))
    assert str(refused.value) == message


def test_a_service_without_a_descriptor_is_refused() -> None:
    with pytest.raises(ServiceStartError, match=r"^service test\.v1\.Nothing: no protobuf descriptor"):
        method_scopes(["test.v1.Nothing"])


@pytest.mark.parametrize(
    ("has", "needed", "allowed"),
    [
        (Scope.READ, Scope.READ, True),
        (Scope.READ, Scope.ADMIN, False),
        (Scope.ADMIN, Scope.READ, True),
        (Scope.ADMIN, Scope.ADMIN, True),
    ],
)
def test_admin_implies_read(has: Scope, needed: Scope, allowed: bool) -> None:
    assert has.allows(needed) is allowed


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


CHECK = BearerTokenCheck(
    SHARED,
    grants=[TokenGrant(Scope.READ, "watch", READER), TokenGrant(Scope.ADMIN, "ops", OPERATOR)],
    scopes=method_scopes([AGGREGATOR]),
)
FORGET = f"/{AGGREGATOR}/ForgetIdentity"
LIST = f"/{AGGREGATOR}/ListIdentities"


@pytest.mark.parametrize(
    ("token", "method", "subject", "refusal"),
    [
        (READER, LIST, "watch", None),
        (READER, FORGET, None, "method ForgetIdentity needs scope admin; this token has read"),
        (
            READER,
            "/test.v1.Unscoped/Anything",
            None,
            "method Anything needs scope admin; this token has read",
        ),
        (OPERATOR, FORGET, "ops", None),
        (OPERATOR, LIST, "ops", None),
        (SHARED, FORGET, SHARED_SUBJECT, None),
        (UNKNOWN, LIST, None, "the bearer token is not one this service accepts"),
    ],
    ids=[
        "read lists",
        "read forgets",
        "read calls an unscoped method",
        "admin forgets",
        "admin lists",
        "shared forgets",
        "unknown token",
    ],
)
def test_the_check_admits_by_scope(token: str, method: str, subject: str | None, refusal: str | None) -> None:
    if refusal is None:
        assert CHECK.grant_of(bearer(token), method).subject == subject
        return
    with pytest.raises(PermissionDenied) as refused:
        CHECK.grant_of(bearer(token), method)
    assert str(refused.value) == refusal


def test_the_check_still_needs_a_bearer_token() -> None:
    with pytest.raises(Unauthenticated, match=r"^no authorization metadata"):
        CHECK.grant_of([], LIST)


# -- real servers on sockets ------------------------------------------------------------------------


@dataclass
class Seen:
    """What the fake servicers saw: (method, caller_subject) of each call that reached them."""

    calls: list[tuple[str, str | None]] = field(default_factory=list)


class Aggregator(aggregator_pb2_grpc.AggregatorServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def Subscribe(self, request: Any, context: Any) -> Iterator[aggregator_pb2.SubscribeResponse]:  # noqa: N802
        self.seen.calls.append(("Subscribe", caller_subject(context)))
        yield aggregator_pb2.SubscribeResponse(offset=7)

    def ListIdentities(self, request: Any, context: Any) -> aggregator_pb2.ListIdentitiesResponse:  # noqa: N802
        self.seen.calls.append(("ListIdentities", caller_subject(context)))
        return aggregator_pb2.ListIdentitiesResponse(identities=[aggregator_pb2.Identity(identity_id="id-1")])

    def ForgetIdentity(self, request: Any, context: Any) -> aggregator_pb2.ForgetIdentityResponse:  # noqa: N802
        self.seen.calls.append(("ForgetIdentity", caller_subject(context)))
        return aggregator_pb2.ForgetIdentityResponse(forgotten_ids=[request.identity])


class Ingest(ingest_pb2_grpc.IngestServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def PushFrames(self, request_iterator: Any, context: Any) -> ingest_pb2.PushFramesResponse:  # noqa: N802
        self.seen.calls.append(("PushFrames", caller_subject(context)))
        return ingest_pb2.PushFramesResponse(accepted=sum(1 for _ in request_iterator))


@dataclass
class Served:
    server: GrpcServer
    metrics: ServiceMetrics
    seen: Seen

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def refusals(self, method: str, code: str) -> float:
        labels = rf'(?=[^}}]*code="{code}")(?=[^}}]*method="{method}")'
        found = re.search(
            rf"^faceflow_grpc_refused_total\{{{labels}[^}}]*\}} (\S+)$", self.metrics.render(), re.M
        )
        return float(found.group(1)) if found else 0.0


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def start(security: ServerSecurity) -> Served:
        seen, metrics = Seen(), ServiceMetrics("faceflow-test")
        server = GrpcServer(
            "test",
            ServerSettings(host="127.0.0.1", port=0, workers=4),
            [
                ServiceBinding(
                    AGGREGATOR, aggregator_pb2_grpc.add_AggregatorServicer_to_server, Aggregator(seen)
                ),
                ServiceBinding(INGEST, ingest_pb2_grpc.add_IngestServicer_to_server, Ingest(seen)),
            ],
            metrics=metrics,
            security=security,
        )
        server.start()
        started.append(Served(server, metrics, seen))
        return started[-1]

    yield start
    for served in started:
        served.server.stop(0).wait(5)


def subscribe(channel: grpc.Channel) -> list[int]:
    call = aggregator_pb2_grpc.AggregatorStub(channel).Subscribe(
        aggregator_pb2.SubscribeRequest(), timeout=TIMEOUT
    )
    return [item.offset for item in call]


def list_identities(channel: grpc.Channel) -> list[str]:
    reply = aggregator_pb2_grpc.AggregatorStub(channel).ListIdentities(
        aggregator_pb2.ListIdentitiesRequest(), timeout=TIMEOUT
    )
    return [i.identity_id for i in reply.identities]


def forget(channel: grpc.Channel) -> list[str]:
    reply = aggregator_pb2_grpc.AggregatorStub(channel).ForgetIdentity(
        aggregator_pb2.ForgetIdentityRequest(identity="id-1"), timeout=TIMEOUT
    )
    return list(reply.forgotten_ids)


def push(channel: grpc.Channel) -> int:
    requests = iter([ingest_pb2.PushFramesRequest(stream_id="s", image=b"x")] * 3)
    return int(ingest_pb2_grpc.IngestStub(channel).PushFrames(requests, timeout=TIMEOUT).accepted)


def list_services(channel: grpc.Channel) -> set[str]:
    (answer,) = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    return {s.name for s in answer.list_services_response.service}


def health_check(channel: grpc.Channel) -> int:
    return int(
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT).status
    )


def refused(call: Any, channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(channel)
    return caught.value.code(), caught.value.details() or ""


SCOPED = ServerSecurity(
    tokens=[TokenGrant(Scope.READ, "watch-dashboard", READER), TokenGrant(Scope.ADMIN, "ops:alice", OPERATOR)]
)


def test_a_read_token_subscribes_and_lists_but_may_not_change_anything(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    served = serve(SCOPED)
    with channel_for(served.target, ClientSecurity(token=READER)) as channel:
        assert subscribe(channel) == [7]
        assert list_identities(channel) == ["id-1"]
        assert list_services(channel) >= {AGGREGATOR, INGEST}
        assert refused(forget, channel) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "method ForgetIdentity needs scope admin; this token has read",
        )
        assert refused(push, channel) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "method PushFrames needs scope admin; this token has read",
        )
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
    assert served.seen.calls == [("Subscribe", "watch-dashboard"), ("ListIdentities", "watch-dashboard")]
    assert served.refusals("ForgetIdentity", "PERMISSION_DENIED") == 1
    assert served.refusals("PushFrames", "PERMISSION_DENIED") == 1
    assert all(token not in caplog.text for token in SECRETS)


def test_an_admin_token_calls_read_and_admin_methods_as_its_subject(serve: Any) -> None:
    served = serve(SCOPED)
    with channel_for(served.target, ClientSecurity(token=OPERATOR)) as channel:
        assert subscribe(channel) == [7]
        assert list_identities(channel) == ["id-1"]
        assert forget(channel) == ["id-1"]
        assert push(channel) == 3
    assert served.seen.calls == [
        ("Subscribe", "ops:alice"),
        ("ListIdentities", "ops:alice"),
        ("ForgetIdentity", "ops:alice"),
        ("PushFrames", "ops:alice"),
    ]


def test_unknown_and_missing_tokens_are_refused_and_reach_nothing(serve: Any) -> None:
    served = serve(SCOPED)
    with channel_for(served.target, ClientSecurity(token=UNKNOWN)) as channel:
        assert refused(list_identities, channel) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "the bearer token is not one this service accepts",
        )
    with channel_for(served.target, ClientSecurity()) as channel:
        assert refused(subscribe, channel)[0] is grpc.StatusCode.UNAUTHENTICATED
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
    assert served.seen.calls == []


@pytest.mark.parametrize(
    ("security", "subject"),
    [(ServerSecurity(token=SHARED), SHARED_SUBJECT), (ServerSecurity(), None)],
    ids=["the shared token", "no token"],
)
def test_the_shared_token_keeps_every_scope_and_no_token_has_no_subject(
    serve: Any, security: ServerSecurity, subject: str | None
) -> None:
    served = serve(security)
    with channel_for(served.target, ClientSecurity(token=SHARED if security.token else None)) as channel:
        assert forget(channel) == ["id-1"]
        assert subscribe(channel) == [7]
    assert served.seen.calls == [("ForgetIdentity", subject), ("Subscribe", subject)]


def test_a_server_with_scoped_tokens_does_not_start_with_an_unscoped_method(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {name: dict(methods) for name, methods in METHOD_SCOPES.items()}
    del table[AGGREGATOR]["ForgetIdentity"]
    monkeypatch.setattr(scopes_module, "METHOD_SCOPES", table)
    bindings = [
        ServiceBinding(AGGREGATOR, aggregator_pb2_grpc.add_AggregatorServicer_to_server, Aggregator(Seen()))
    ]
    settings = ServerSettings(host="127.0.0.1", port=0, workers=4)
    with pytest.raises(
        ServiceStartError, match=rf"^/{re.escape(AGGREGATOR)}/ForgetIdentity: expected a scope"
    ):
        GrpcServer("test", settings, bindings, security=SCOPED)
    shared_only = GrpcServer(
        "test", settings, bindings, security=ServerSecurity(token=SHARED)
    )  # no table needed
    assert shared_only.security.describe() == "plaintext, bearer token"


@pytest.fixture
def ingest_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[IngestService, IngestServer]]:
    (tmp_path / "token").write_text(SHARED + "\n")
    monkeypatch.setenv("FACEFLOW_AUTH_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("FACEFLOW_AUTH_TOKENS_FILE", str(tokens_file(tmp_path)))
    service = IngestService(IngestConfig(target_fps=0.0, seq_start="zero"), sink=InMemoryFrameSink())
    service.start(serve_metrics=False)
    server = IngestServer(service, "127.0.0.1", 0, workers=4)
    server.start()
    yield service, server
    server.stop(0).wait(5)
    service.stop(2)


def test_ingest_started_from_the_environment_serves_each_token_its_scope(
    ingest_from_env: tuple[IngestService, IngestServer],
) -> None:
    service, server = ingest_from_env
    assert server.server.security.describe() == "plaintext, bearer token + scoped tokens (1 admin, 1 read)"
    target = f"127.0.0.1:{server.port}"
    frames = [ingest_pb2.PushFramesRequest(stream_id="door", image=astronaut_jpeg())] * 2
    with channel_for(target, ClientSecurity(token=READER)) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        assert list(stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT).sources) == []
        for call, request in (
            (stub.StartSource, ingest_pb2.StartSourceRequest()),
            (stub.StopSource, ingest_pb2.StopSourceRequest()),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=TIMEOUT)
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert re.fullmatch(
                r"method (StartSource|StopSource) needs scope admin; this token has read",
                caught.value.details() or "",
            )
        with pytest.raises(grpc.RpcError) as caught:
            stub.PushFrames(iter(frames), timeout=TIMEOUT)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    for token in (OPERATOR, SHARED):
        with channel_for(target, ClientSecurity(token=token)) as channel:
            assert ingest_pb2_grpc.IngestStub(channel).PushFrames(iter(frames), timeout=TIMEOUT).accepted == 2
    sink = service.sink
    assert isinstance(sink, InMemoryFrameSink) and len(sink.frames) == 4  # the read token's pushed none

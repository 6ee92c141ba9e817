"""faceflow.aggregator.routing without a broker: who answers for a stream (from a
describe_groups-shaped membership), the loop guard, the forwarded metadata, the ListStreams
merge, the advertised address, the peers' transport; and forwarding over real gRPC sockets to
small stand-in owners (an owner's error reaches the caller, a dead owner is retried after a
membership refresh)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from support_security import make_certificates

from faceflow.aggregator.config import AggregatorConfig, AggregatorConfigError
from faceflow.aggregator.routing import ForwardError, Router, merge_streams
from faceflow.errors import NotFound, PermissionDenied, Unavailable
from faceflow.kafka.membership import GroupWatch, MembershipUnavailable, encode_user_data, key_partition
from faceflow.service.peers import (
    FORWARDED,
    PeerTransport,
    advertised_address,
    forward_metadata,
    is_forwarded,
    peer_transport,
)
from faceflow.service.security import ClientSecurity, ServerSecurity
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc

PARTITIONS = 4
ME = "10.0.0.1:50053"


def stream_in(partition: int) -> str:
    """A stream id whose key the producers put in ``partition``."""
    return next(f"cam{i}" for i in range(1000) if key_partition(f"cam{i}".encode(), PARTITIONS) == partition)


def description(*members: tuple[str, str, list[int]], state: str = "Stable") -> dict[str, Any]:
    """One group of ``KafkaAdminClient.describe_groups`` (kafka-python 3.0's decoded form)."""
    return {
        "group_state": state,
        "error": None,
        "members": [
            {
                "member_id": member_id,
                "member_metadata": {"topics": ["an"], "user_data": encode_user_data(address).decode()},
                "member_assignment": {"assigned_partitions": [{"topic": "an", "partitions": parts}]},
            }
            for member_id, address, parts in members
        ],
    }


class Context:
    """The two calls the router makes of a grpc.ServicerContext."""

    def __init__(self, metadata: list[tuple[str, str]] | None = None, remaining: float | None = 5.0) -> None:
        self.metadata = metadata or []
        self.remaining = remaining

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return self.remaining


class Describe:
    """describe_groups answers in turn (the last repeats); counts the calls."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def router(describe: Describe, *, owned: set[int], me: str = ME) -> Router:
    return Router(
        watch=GroupWatch("g", "an", describe, max_age_s=60.0, min_gap_s=0.0),
        partitions=PARTITIONS,
        owned=lambda: owned,
        address=lambda: me,
        transport=PeerTransport(),
        timeout_s=5.0,
    )


# -- who answers ------------------------------------------------------------------------------------


def test_a_stream_of_an_owned_partition_is_answered_here_without_asking_the_broker() -> None:
    describe = Describe(MembershipUnavailable("must not be asked"))
    assert router(describe, owned={0, 1}).owner(stream_in(1)) is None
    assert describe.calls == 0


def test_a_stream_of_another_members_partition_goes_to_its_advertised_address() -> None:
    describe = Describe(description(("m-me", ME, [0, 1]), ("m-b", "10.0.0.2:50053", [2, 3])))
    owner = router(describe, owned={0, 1}).owner(stream_in(3))
    assert owner is not None and (owner.member_id, owner.address) == ("m-b", "10.0.0.2:50053")


def test_a_snapshot_naming_this_replica_is_answered_here() -> None:
    describe = Describe(description(("m-me", ME, [0, 1, 2, 3])))
    assert router(describe, owned={0, 1}).owner(stream_in(2)) is None  # our consumer lags the snapshot


def test_a_partition_without_an_owner_refreshes_the_membership_once() -> None:
    before = description(("m-me", ME, [0, 1]), state="CompletingRebalance")
    after = description(("m-me", ME, [0, 1]), ("m-b", "b:1", [2, 3]))
    describe = Describe(before, after)
    r = router(describe, owned={0, 1})
    owner = r.owner(stream_in(2))
    assert owner is not None and owner.address == "b:1" and describe.calls == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            description(("m-me", ME, [0, 1]), state="CompletingRebalance"),
            r"partition 2 has no owner in group 'g' right now \(CompletingRebalance: a rebalance\); retry",
        ),
        (
            description(("m-me", ME, [0, 1]), ("m-old", "", [2, 3])),
            r"owned by group member m-old, which advertises no gRPC address",
        ),
        (
            MembershipUnavailable("cannot describe consumer group 'g' at k:9092: KafkaTimeoutError"),
            r"cannot tell which replica owns stream 'cam\d+': cannot describe consumer group",
        ),
    ],
)
def test_an_owner_that_cannot_be_found_is_unavailable(answer: Any, message: str) -> None:
    with pytest.raises(Unavailable, match=message):
        router(Describe(answer), owned={0, 1}).owner(stream_in(2))


def test_a_forwarded_call_is_answered_here_never_forwarded_again() -> None:
    describe = Describe(description(("m-b", "b:1", [0, 1, 3])))  # stale: it names another owner
    r = router(describe, owned={2})
    context = Context([("authorization", "Bearer x"), (FORWARDED, "a:1")])
    answer = r.forward("GetStream", stream_in(2), aggregator_pb2.GetStreamRequest(), context)
    assert answer is None and describe.calls == 0 and r.stats.forwarded_in == 1
    assert r.peer_streams(aggregator_pb2.ListStreamsRequest(), context) == []
    assert r.stats.forwarded_in == 2 and r.stats.forwarded_out == 0


def test_a_forwarded_call_for_a_partition_that_moved_away_is_unavailable_not_not_found() -> None:
    # The origin forwarded from a stale membership: UNAVAILABLE makes it refresh and retry, where
    # answering here would give NOT_FOUND for a stream that exists on its new owner.
    r = router(Describe(MembershipUnavailable("must not be asked")), owned={0, 1})
    context = Context([(FORWARDED, "a:1")])
    with pytest.raises(Unavailable, match=r"partition 2 is no longer owned by the replica at"):
        r.forward("GetStream", stream_in(2), aggregator_pb2.GetStreamRequest(), context)


# -- metadata, merge, address, transport ---------------------------------------------------------------


def test_forwarded_metadata_keeps_the_callers_token_and_trace_and_marks_the_call() -> None:
    caller = [
        ("authorization", "Bearer t0k"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("user-agent", "grpc-python/1.0"),
        ("grpc-accept-encoding", "gzip"),
        ("x-bin", b"\x00"),  # type: ignore[list-item]
        (FORWARDED, "spoofed"),
    ]
    out = forward_metadata(caller, origin="a:1")
    assert out == [caller[0], caller[1], caller[4], (FORWARDED, "a:1")]
    assert is_forwarded(out) and not is_forwarded(caller[:2]) and not is_forwarded(None)


def info(stream_id: str, frames: int, last_seq: int, partition: int = 0) -> aggregator_pb2.StreamInfo:
    return aggregator_pb2.StreamInfo(
        stream_id=stream_id, frames=frames, last_seq=last_seq, partition=partition
    )


def test_list_streams_merges_every_stream_once_sorted_the_furthest_report_winning() -> None:
    local = [info("b", 5, 4), info("d", 1, 0)]
    peers = [[info("c", 2, 1), info("b", 9, 8)], [info("a", 3, 2), info("d", 1, 0, partition=3)]]
    merged = merge_streams(local, peers)
    assert [(s.stream_id, s.frames) for s in merged] == [("a", 3), ("b", 9), ("c", 2), ("d", 1)]
    assert merged[3].partition == 0, "a tie keeps the first report (this replica's)"
    assert merge_streams([], []) == []


@pytest.mark.parametrize(
    ("configured", "grpc_host", "env", "expected"),
    [
        ("", "0.0.0.0", {"POD_IP": "10.1.2.3"}, "10.1.2.3:50053"),
        ("", "0.0.0.0", {"POD_IP": "fd00::7"}, "[fd00::7]:50053"),
        ("", "127.0.0.1", {}, "127.0.0.1:50053"),
        ("agg-0.agg", "0.0.0.0", {"POD_IP": "10.1.2.3"}, "agg-0.agg:50053"),
        ("agg-0.agg:6000", "0.0.0.0", {}, "agg-0.agg:6000"),
        ("[fd00::7]:6000", "0.0.0.0", {}, "[fd00::7]:6000"),
        ("fd00::7", "0.0.0.0", {}, "[fd00::7]:50053"),
    ],
)
def test_the_advertised_address(configured: str, grpc_host: str, env: dict[str, str], expected: str) -> None:
    assert advertised_address(configured, grpc_host=grpc_host, port=50053, env=env) == expected


def test_the_advertised_address_of_a_wildcard_listener_without_pod_ip_is_the_host_name() -> None:
    assert advertised_address("", grpc_host="::", port=7, env={}) == f"{socket.gethostname()}:7"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("10.0.0.7", True),
        ("10.0.0.7:50053", True),
        ("agg-0.agg.ns.svc", True),
        ("[fd00::7]:50053", True),
        ("fd00::7", True),
        ("10.0.0.7:0", False),
        ("10.0.0.7:70000", False),
        ("a b:1", False),
        ("h:1,h:2", False),
        ("http://h:1", False),
        ("h:", False),
    ],
)
def test_advertise_address_is_validated(value: str, ok: bool) -> None:
    if ok:
        assert AggregatorConfig(advertise_address=value).advertise_address == value
    else:
        with pytest.raises(AggregatorConfigError, match=r"advertise_address: expected host or host:port"):
            AggregatorConfig(advertise_address=value)


def test_advertise_address_comes_from_the_environment() -> None:
    env = {"FACEFLOW_AGGREGATOR_ADVERTISE_ADDRESS": "10.0.0.9:50053"}
    assert AggregatorConfig.from_env(env).advertise_address == "10.0.0.9:50053"


def test_peer_transport_follows_the_servers_security(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    chain, key, ca = certs.server_cert.read_bytes(), certs.server_key.read_bytes(), certs.ca.read_bytes()
    client_chain, client_key = certs.client_cert.read_bytes(), certs.client_key.read_bytes()
    assert peer_transport(ServerSecurity(token="t"), ClientSecurity(token="t")) == PeerTransport()
    tls = peer_transport(ServerSecurity(certificate_chain=chain, private_key=key), None)
    assert tls.tls and tls.root_certificates is None and tls.certificate_chain is None
    assert tls.describe() == "TLS, verified with the system CAs"
    mutual = ServerSecurity(certificate_chain=chain, private_key=key, client_ca=ca)
    own = peer_transport(mutual, ClientSecurity())
    assert (own.root_certificates, own.certificate_chain, own.private_key) == (ca, chain, key)
    assert own.roots_from == "FACEFLOW_TLS_CLIENT_CA_FILE"
    configured = ClientSecurity(
        root_certificates=ca, certificate_chain=client_chain, private_key=client_key, token="t",
        server_name="faceflow-aggregator",
    )  # fmt: skip
    given = peer_transport(mutual, configured)
    assert (given.certificate_chain, given.server_name, given.roots_from) == (
        client_chain,
        "faceflow-aggregator",
        "FACEFLOW_TLS_CA_FILE",
    )
    assert "token" not in repr(given) and given.describe() == (
        "TLS, verified with FACEFLOW_TLS_CA_FILE as faceflow-aggregator with a client certificate"
    )


# -- forwarding over real sockets ------------------------------------------------------------------------


class Owner(aggregator_pb2_grpc.AggregatorServicer):
    """A stand-in owner: answers GetStream with its name, or the error it is told to; records the
    metadata of each call."""

    def __init__(self, name: str, error: tuple[grpc.StatusCode, str] | None = None) -> None:
        self.name = name
        self.error = error
        self.seen: list[dict[str, str]] = []

    def GetStream(self, request: aggregator_pb2.GetStreamRequest, context: Any) -> Any:  # noqa: N802
        self.seen.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if self.error is not None:
            context.abort(*self.error)
        return aggregator_pb2.GetStreamResponse(stream=info(request.stream_id, 1, 0, partition=7))

    def ListStreams(self, request: aggregator_pb2.ListStreamsRequest, context: Any) -> Any:  # noqa: N802
        self.seen.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        if self.error is not None:
            context.abort(*self.error)
        return aggregator_pb2.ListStreamsResponse(streams=[info(f"{self.name}-s", 1, 0)])


@contextmanager
def serving(owner: Owner) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    aggregator_pb2_grpc.add_AggregatorServicer_to_server(owner, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait(5)


def dead_address() -> str:
    """An address nothing listens on (connections are refused), as a killed owner's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def test_the_owner_answers_with_the_callers_token_and_the_forwarded_mark() -> None:
    owner = Owner("b")
    with serving(owner) as address:
        r = router(Describe(description(("m-me", ME, [0, 1]), ("m-b", address, [2, 3]))), owned={0, 1})
        try:
            stream = stream_in(2)
            reply = r.forward(
                "GetStream",
                stream,
                aggregator_pb2.GetStreamRequest(stream_id=stream),
                Context([("authorization", "Bearer t0k"), ("user-agent", "x")]),
            )
        finally:
            r.close()
    assert reply.stream.stream_id == stream and reply.stream.partition == 7
    assert owner.seen[0]["authorization"] == "Bearer t0k" and owner.seen[0][FORWARDED] == ME
    assert r.stats.forwarded_out == 1


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.INTERNAL, ForwardError),
    ],
)
def test_the_owners_error_is_the_callers_error(code: grpc.StatusCode, kind: type[Exception]) -> None:
    owner = Owner("b", (code, "stream 'x' has no track 't9'"))
    with serving(owner) as address:
        r = router(Describe(description(("m-b", address, [0, 1, 2, 3]))), owned=set())
        try:
            with pytest.raises(kind, match="stream 'x' has no track 't9'"):
                r.forward("GetStream", "x", aggregator_pb2.GetStreamRequest(stream_id="x"), Context())
        finally:
            r.close()
    assert len(owner.seen) == 1, "no retry on an answer that is not UNAVAILABLE"


def test_a_dead_owner_is_retried_on_the_owner_a_refresh_names() -> None:
    dead = dead_address()
    owner = Owner("c")
    with serving(owner) as alive:
        describe = Describe(
            description(("m-me", ME, [0, 1]), ("m-b", dead, [2, 3])),
            description(("m-me", ME, [0, 1]), ("m-c", alive, [2, 3])),
        )
        r = router(describe, owned={0, 1})
        try:
            stream = stream_in(3)
            reply = r.forward(
                "GetStream", stream, aggregator_pb2.GetStreamRequest(stream_id=stream), Context()
            )
        finally:
            r.close()
    assert reply.stream.stream_id == stream and describe.calls == 2 and r.stats.retries == 1


def test_a_dead_owner_that_stays_the_owner_is_unavailable_naming_it() -> None:
    dead = dead_address()
    r = router(Describe(description(("m-me", ME, [0, 1]), ("m-b", dead, [2, 3]))), owned={0, 1})
    try:
        with pytest.raises(Unavailable, match=rf"is owned by the replica at {dead}, which does not answer"):
            r.forward("GetStream", stream_in(2), aggregator_pb2.GetStreamRequest(), Context())
    finally:
        r.close()


def test_a_refresh_that_moves_the_partition_here_answers_here() -> None:
    dead = dead_address()
    owned = {0, 1}
    describe = Describe(description(("m-me", ME, [0, 1]), ("m-b", dead, [2, 3])))
    r = router(describe, owned=owned)
    describe.answers.append(description(("m-me", ME, [0, 1, 2, 3])))
    try:
        assert r.forward("GetStream", stream_in(2), aggregator_pb2.GetStreamRequest(), Context()) is None
    finally:
        r.close()


def test_list_streams_asks_every_other_owner_and_fails_rather_than_hide_a_dead_one() -> None:
    b, c = Owner("b"), Owner("c")
    with serving(b) as addr_b, serving(c) as addr_c:
        members = [("m-me", ME, [0]), ("m-b", addr_b, [1, 2]), ("m-c", addr_c, [3]), ("m-idle", "i:1", [])]
        r = router(Describe(description(*members)), owned={0})
        try:
            reports = r.peer_streams(
                aggregator_pb2.ListStreamsRequest(), Context([("authorization", "Bearer t")])
            )
        finally:
            r.close()
    assert sorted(s.stream_id for report in reports for s in report) == ["b-s", "c-s"]
    assert b.seen[0][FORWARDED] == ME and c.seen[0]["authorization"] == "Bearer t"
    dead = dead_address()
    r = router(Describe(description(("m-me", ME, [0]), ("m-b", dead, [1, 2, 3]))), owned={0})
    try:
        with pytest.raises(
            Unavailable, match=rf"ListStreams: the replica at {dead} \(partitions \[1, 2, 3\]\)"
        ):
            r.peer_streams(aggregator_pb2.ListStreamsRequest(), Context())
    finally:
        r.close()


def test_a_closed_router_forwards_nothing() -> None:
    r = router(Describe(description(("m-b", "b:1", [0, 1, 2, 3]))), owned=set())
    r.close()
    with pytest.raises(Unavailable, match="shutting down"):
        r.forward("GetStream", "x", aggregator_pb2.GetStreamRequest(), Context())
    assert PeerTransport().describe() == "plaintext"

"""faceflow.kafka.membership: the address in the group subscription, the group read back, the
producers' partition of a key; unit tests, then the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.partitioner.default import DefaultPartitioner
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription
from kafka.structs import TopicPartition

from faceflow import topics
from faceflow.kafka import admin
from faceflow.kafka.clients import group_consumer, make_producer
from faceflow.kafka.membership import (
    AdvertisingAssignor,
    GroupWatch,
    Member,
    Membership,
    MembershipUnavailable,
    decode_user_data,
    encode_user_data,
    key_partition,
)


class _Cluster:
    """The two calls DefaultPartitioner makes of kafka-python's ClusterMetadata."""

    def __init__(self, topic: str, partitions: int) -> None:
        self._topic, self._partitions = topic, set(range(partitions))

    def topics(self) -> set[str]:
        return {self._topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions


@pytest.mark.parametrize("partitions", [1, 3, 6, 7])
def test_key_partition_is_the_default_partitioners_choice(partitions: int) -> None:
    cluster = _Cluster("t", partitions)
    for i in range(200):
        key = f"cam-{i}".encode()
        expected = DefaultPartitioner().partition("t", key, key, None, None, cluster)
        assert key_partition(key, partitions) == expected


@pytest.mark.parametrize("partitions", [0, -1, True, 2.0])
def test_key_partition_refuses_a_partition_count_that_is_not_one(partitions: Any) -> None:
    with pytest.raises(ValueError, match=r"partitions: expected an int >= 1, got"):
        key_partition(b"k", partitions)


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        (encode_user_data("10.0.0.7:50053"), "10.0.0.7:50053"),
        (encode_user_data("10.0.0.7:50053").decode(), "10.0.0.7:50053"),  # describe_groups' form
        (encode_user_data(""), ""),
        (b"", ""),
        (None, ""),
        (b"\x00\x01sticky-user-data", ""),  # another assignor's blob
        ('{"v": 1}', ""),
        ('{"v": 1, "grpc": 7}', ""),
        ("{not json", ""),
        ("[1, 2]", ""),
    ],
)
def test_user_data_round_trips_and_foreign_blobs_carry_no_address(raw: object, address: str) -> None:
    assert decode_user_data(raw) == address


def test_the_assignor_adds_the_address_and_keeps_what_the_parent_sends() -> None:
    assignor = AdvertisingAssignor(lambda: "h:1")
    assignor.on_assignment(
        SimpleNamespace(partitions=lambda: [TopicPartition("a", 2), TopicPartition("a", 0)]), 3
    )
    sent = assignor.metadata(["a"])
    assert isinstance(sent, ConsumerProtocolSubscription)
    assert decode_user_data(sent.user_data) == "h:1"
    assert assignor.name == "cooperative-sticky"
    assert [(tp.topic, tp.partitions) for tp in sent.owned_partitions] == [("a", [0, 2])]
    assert list(sent.topics) == ["a"] and sent.version == 1


def _description(*members: tuple[str, str, dict[str, list[int]]], error: str | None = None) -> dict[str, Any]:
    return {
        "group_id": "g",
        "group_state": "Stable",
        "error": error,
        "members": [
            {
                "member_id": member_id,
                "member_metadata": {"topics": list(parts), "user_data": encode_user_data(address).decode()},
                "member_assignment": {
                    "assigned_partitions": [{"topic": t, "partitions": p} for t, p in parts.items()],
                    "user_data": "",
                },
            }
            for member_id, address, parts in members
        ],
    }


def test_membership_from_a_describe_groups_result() -> None:
    described = _description(
        ("m-b", "b:2", {"analyses": [1, 3], "other": [0]}),
        ("m-a", "a:1", {"analyses": [0, 2]}),
        ("m-c", "", {"analyses": []}),
    )
    membership = Membership.from_description("g", described, "analyses")
    assert [m.member_id for m in membership.members] == ["m-a", "m-b", "m-c"]
    assert membership.owner_of(3) == Member("m-b", "b:2", frozenset({1, 3}))
    assert membership.owner_of(0) is not None and membership.owner_of(0).address == "a:1"  # type: ignore[union-attr]
    assert membership.owner_of(4) is None
    assert membership.addresses() == ("a:1", "b:2")
    assert membership.state == "Stable"


def test_a_member_without_metadata_or_assignment_owns_nothing() -> None:
    described = {"group_state": "PreparingRebalance", "members": [{"member_id": "m", "member_metadata": ""}]}
    membership = Membership.from_description("g", described, "analyses")
    assert membership.members == (Member("m", "", frozenset()),)


def test_an_error_in_the_description_is_membership_unavailable() -> None:
    with pytest.raises(MembershipUnavailable, match=r"group 'g': the broker answered .*NOT_COORDINATOR"):
        Membership.from_description("g", _description(error="NotCoordinatorError: NOT_COORDINATOR"), "t")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _counting(answers: list[dict[str, Any]]) -> tuple[Callable[[], dict[str, Any]], list[int]]:
    calls = [0]

    def describe() -> dict[str, Any]:
        calls[0] += 1
        return answers[min(calls[0], len(answers)) - 1]

    return describe, calls


def test_the_watch_caches_refreshes_when_asked_but_not_in_a_burst() -> None:
    first = _description(("m-a", "a:1", {"t": [0]}))
    second = _description(("m-a", "a:1", {"t": [0]}), ("m-b", "b:2", {"t": [1]}))
    describe, calls = _counting([first, second])
    clock = _Clock()
    watch = GroupWatch("g", "t", describe, max_age_s=5.0, min_gap_s=0.5, clock=clock)
    assert watch.get().owner_of(1) is None and calls == [1]
    clock.now = 1.0
    assert watch.get().owner_of(1) is None and calls == [1], "younger than max_age_s: cached"
    assert watch.refresh().owner_of(1) is not None and calls == [2]
    clock.now = 1.2
    assert watch.refresh().owner_of(1) is not None and calls == [2], "within min_gap_s: the same snapshot"
    clock.now = 7.0
    watch.get()
    assert calls == [3], "older than max_age_s: asked again"


@pytest.mark.integration
def test_two_members_advertise_and_the_watch_sees_both_with_disjoint_partitions(
    kafka_bootstrap: str, unique_name: str
) -> None:
    partitions = 4
    admin.ensure_topics(
        kafka_bootstrap, [topics.TopicSpec(name=unique_name, partitions=partitions, configs={})]
    )
    watch = GroupWatch.of_broker(kafka_bootstrap, unique_name, unique_name, max_age_s=0.0, min_gap_s=0.0)
    with ExitStack() as stack:
        consumers: list[KafkaConsumer] = []
        for address in ("127.0.0.1:1111", "127.0.0.1:2222"):
            consumer = group_consumer(
                kafka_bootstrap,
                group_id=unique_name,
                client_id=f"test-{address}",
                session_timeout_ms=10_000,
                assignor=AdvertisingAssignor(lambda a=address: a),  # type: ignore[misc]
            )
            stack.callback(consumer.close)
            consumer.subscribe([unique_name])
            consumers.append(consumer)
        stack.callback(watch.close)
        deadline = time.monotonic() + 60
        while True:
            for consumer in consumers:
                consumer.poll(timeout_ms=100)
            held = [{tp.partition for tp in c.assignment()} for c in consumers]
            membership = watch.refresh()
            owners = {m.address: m.partitions for m in membership.members}
            if all(held) and [owners.get("127.0.0.1:1111"), owners.get("127.0.0.1:2222")] == [
                frozenset(h) for h in held
            ]:
                break
            assert time.monotonic() < deadline, f"no stable two-member group: held {held}, seen {owners}"
        assert owners["127.0.0.1:1111"].isdisjoint(owners["127.0.0.1:2222"])
        assert owners["127.0.0.1:1111"] | owners["127.0.0.1:2222"] == set(range(partitions))
        # Where a real producer puts keyed records is where key_partition says.
        producer = make_producer(kafka_bootstrap, client_id="test-keys")
        stack.callback(producer.close, 5)
        for i in range(12):
            key = f"cam-{i}".encode()
            sent = producer.send(unique_name, key=key, value=b"x").get(timeout=30)
            assert sent.partition == key_partition(key, partitions), key

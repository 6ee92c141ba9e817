"""Who is in a consumer group, which partitions each member owns, and where each one answers.

The group's own metadata is the directory, as in Kafka Streams' interactive queries (its
``application.server`` rides in the subscription's user data): each member puts the address it
serves on in the ``user_data`` of its group subscription (:class:`AdvertisingAssignor`), and anyone
reads members, addresses and assignments back with ``DescribeGroups`` (:class:`GroupWatch`). No
coordinator of our own, no extra topic: the broker already knows who is alive and who owns what,
and a rebalance updates both at once.

:func:`key_partition` is the partition the producers put a key in (kafka-python's
``DefaultPartitioner``: murmur2 of the key bytes), so a reader can tell which member owns a key.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from faceflow.errors import FaceflowError
from faceflow.kafka.clients import KafkaSecurity

logger = logging.getLogger(__name__)

#: The version of the JSON this module writes into ``user_data`` (``{"v": 1, "grpc": "host:port"}``).
USER_DATA_VERSION = 1


class MembershipUnavailable(FaceflowError):  # noqa: N818 - names the state, as TritonUnavailable
    """The broker did not describe the group (unreachable, not authorized, no coordinator yet)."""


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``, exactly as kafka-python's DefaultPartitioner
    (and the Java client's) picks it for a keyed record: ``murmur2(key) & 0x7fffffff % partitions``.

    Raises:
        ValueError: ``partitions`` is not a positive int.
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions: expected an int >= 1, got {partitions!r}")
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def encode_user_data(address: str) -> bytes:
    """The subscription ``user_data`` that advertises ``address`` (empty: advertise nothing)."""
    if not address:
        return b""
    return json.dumps({"v": USER_DATA_VERSION, "grpc": address}, separators=(",", ":")).encode()


def decode_user_data(raw: object) -> str:
    """The address in a member's ``user_data`` ("" when it carries none, or something else: a
    member of another program or an older faceflow)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str) or not raw.startswith("{"):
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    address = data.get("grpc") if isinstance(data, dict) else None
    return address if isinstance(address, str) else ""


class AdvertisingAssignor(CooperativeStickyAssignor):  # type: ignore[misc]
    """The cooperative-sticky assignor, with this member's address in its subscription's
    ``user_data``.

    The name stays ``cooperative-sticky`` and ``owned_partitions`` stays exactly what the parent
    computes, so members with and without an address agree on the protocol and the assignment;
    the cooperative assignor never reads ``user_data`` (it uses ``owned_partitions``).
    kafka-python 3.0 takes assignor *instances* as well as classes in
    ``partition_assignment_strategy`` (``ConsumerCoordinator.__init__``), so the address is a
    constructor argument: a callable, read at each JoinGroup, because a service binds its port
    (``0`` picks one) after it builds its consumer.
    """

    def __init__(self, address: Callable[[], str]) -> None:
        super().__init__()
        self._address = address

    def metadata(self, topics: Sequence[str]) -> ConsumerProtocolSubscription:
        parent = super().metadata(topics)
        return ConsumerProtocolSubscription(
            version=parent.version,
            topics=parent.topics,
            user_data=encode_user_data(self._address()),
            owned_partitions=parent.owned_partitions,
        )


@dataclass(frozen=True)
class Member:
    """One member of the group: its id, the address it advertises ("" if none) and the
    partitions of the watched topic assigned to it."""

    member_id: str
    address: str
    partitions: frozenset[int]


def _field(value: object, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _assigned(assignment: object, topic: str) -> frozenset[int]:
    out: set[int] = set()
    for entry in _field(assignment, "assigned_partitions") or ():
        if isinstance(entry, Mapping):
            name, partitions = entry.get("topic"), entry.get("partitions")
        else:  # (topic, [partitions]) from an undecoded-to-dict assignment
            name, partitions = entry[0], entry[1]
        if name == topic:
            out.update(int(p) for p in partitions or ())
    return frozenset(out)


@dataclass(frozen=True)
class Membership:
    """A snapshot of the group: members, their addresses and who owns which partition."""

    group: str
    state: str
    members: tuple[Member, ...]

    @classmethod
    def from_description(cls, group: str, description: Mapping[str, Any], topic: str) -> Membership:
        """Build it from one group of kafka-python's ``KafkaAdminClient.describe_groups`` (3.0:
        ``members[*].member_metadata.user_data`` and ``member_assignment.assigned_partitions``
        decoded), counting only the partitions of ``topic``.

        Raises:
            MembershipUnavailable: the description carries an error (no coordinator, not authorized).
        """
        error = description.get("error")
        if error:
            raise MembershipUnavailable(f"group {group!r}: the broker answered {error}")
        members = []
        for raw in description.get("members") or ():
            members.append(
                Member(
                    member_id=str(_field(raw, "member_id") or ""),
                    address=decode_user_data(_field(_field(raw, "member_metadata"), "user_data")),
                    partitions=_assigned(_field(raw, "member_assignment"), topic),
                )
            )
        members.sort(key=lambda m: m.member_id)
        return cls(group=group, state=str(description.get("group_state") or ""), members=tuple(members))

    def owner_of(self, partition: int) -> Member | None:
        """The member the partition is assigned to (None: nobody, e.g. during a rebalance)."""
        for member in self.members:
            if partition in member.partitions:
                return member
        return None

    def addresses(self) -> tuple[str, ...]:
        """Every advertised address, sorted, each once."""
        return tuple(sorted({m.address for m in self.members if m.address}))


class GroupWatch:
    """``DescribeGroups`` of one group, cached: :meth:`get` answers from a snapshot younger than
    ``max_age_s``; :meth:`refresh` asks the broker now (a caller that found the snapshot wrong: an
    owner that is gone, a partition without one), but never more often than every ``min_gap_s``.

    Args:
        describe: returns the group's description (a dict of ``describe_groups``); the default
            (:meth:`of_broker`) asks the broker with an admin client of its own.
    """

    def __init__(
        self,
        group: str,
        topic: str,
        describe: Callable[[], Mapping[str, Any]],
        *,
        max_age_s: float = 5.0,
        min_gap_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        close: Callable[[], None] | None = None,
    ) -> None:
        self.group = group
        self.topic = topic
        self.max_age_s = max_age_s
        self.min_gap_s = min_gap_s
        self._describe = describe
        self._clock = clock
        self._close = close
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._snapshot: Membership | None = None
        self._taken = float("-inf")

    @classmethod
    def of_broker(
        cls,
        bootstrap: str,
        group: str,
        topic: str,
        *,
        security: KafkaSecurity | None = None,
        timeout_ms: int = 5_000,
        **kwargs: Any,
    ) -> GroupWatch:
        """A watch that asks the broker at ``bootstrap`` (the admin client is made on first use)."""
        from faceflow.kafka.admin import admin_client  # noqa: PLC0415 - admin imports clients

        holder: list[Any] = []
        lock = threading.Lock()

        def describe() -> Mapping[str, Any]:
            with lock:
                if not holder:
                    holder.append(admin_client(bootstrap, timeout_ms=timeout_ms, security=security))
                client = holder[0]
            try:
                described: Mapping[str, Any] = client.describe_groups([group])[group]
            except (KafkaError, KeyError, OSError) as exc:
                raise MembershipUnavailable(
                    f"cannot describe consumer group {group!r} at {bootstrap}: {type(exc).__name__}: {exc}"
                ) from None
            return described

        def close() -> None:
            with lock:
                for client in holder:
                    with suppress(Exception):
                        client.close()
                holder.clear()

        return cls(group, topic, describe, close=close, **kwargs)

    def get(self) -> Membership:
        """The cached snapshot, refreshed when older than ``max_age_s``.

        Raises:
            MembershipUnavailable: no snapshot can be had from the broker.
        """
        with self._lock:
            if self._snapshot is not None and self._clock() - self._taken < self.max_age_s:
                return self._snapshot
        return self.refresh()

    def refresh(self) -> Membership:
        """A fresh snapshot (the cached one if it is younger than ``min_gap_s``).

        Raises:
            MembershipUnavailable: the broker did not describe the group.
        """
        with self._refreshing:  # one DescribeGroups at a time; get() on a fresh snapshot never waits
            with self._lock:
                if self._snapshot is not None and self._clock() - self._taken < self.min_gap_s:
                    return self._snapshot  # another caller refreshed it meanwhile
            snapshot = Membership.from_description(self.group, self._describe(), self.topic)
            with self._lock:
                self._snapshot, self._taken = snapshot, self._clock()
            logger.debug(
                "group %s (%s): %s",
                self.group,
                snapshot.state,
                ", ".join(f"{m.address or m.member_id}={sorted(m.partitions)}" for m in snapshot.members),
            )
            return snapshot

    def close(self) -> None:
        if self._close is not None:
            self._close()

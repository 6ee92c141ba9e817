"""Any replica answers for any stream: a call for a stream another replica owns is forwarded there.

A stream's state lives on one replica: the member of the consumer group that owns the analyses
partition of the stream's key. Which member that is, and where it answers, comes from Kafka itself
(:mod:`faceflow.kafka.membership`): every replica advertises its gRPC address in its group
subscription, and any replica reads the members, their addresses and their partitions back with
``DescribeGroups``, cached for a few seconds and refreshed when it proves wrong. This is what
Kafka Streams does for interactive queries; there is no coordinator of our own to run or to fail.

Rules (:class:`Router`):

* the stream's partition (:func:`~faceflow.kafka.membership.key_partition`, the producers'
  murmur2) is this replica's: answer here;
* a forwarded call (``faceflow-forwarded`` metadata) is answered here, whatever the answer, and
  never forwarded again (the loop guard);
* otherwise the same request goes to the owner with the caller's metadata (its bearer token: the
  owner checks it as the first replica did) plus ``faceflow-forwarded``. The owner's answer,
  error or not, is the caller's answer;
* UNAVAILABLE from the owner (gone, draining): the membership is refreshed once and the call
  retried on the new owner (or answered here, if the partition moved here); then UNAVAILABLE naming
  the owner;
* ListStreams asks every other member that owns partitions and merges (:func:`merge_streams`).

Channels to owners are cached per address and closed on :meth:`Router.close`. Over TLS they verify
the owner with ``FACEFLOW_TLS_CA_FILE`` (else the mTLS client CA, else the system's roots) as
``FACEFLOW_TLS_SERVER_NAME`` when set, and present ``FACEFLOW_TLS_CLIENT_CERT_FILE`` /
``_KEY_FILE`` (else, for mTLS, the replica's own certificate): see
:func:`faceflow.service.peers.peer_transport`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import grpc

from faceflow.errors import (
    DeadlineExceeded,
    FaceflowError,
    RequestError,
    Unavailable,
)
from faceflow.kafka.membership import GroupWatch, Member, Membership, MembershipUnavailable, key_partition
from faceflow.service.grpc_server import STATUS_CODES
from faceflow.service.peers import (
    PeerTransport,
    forward_metadata,
    is_forwarded,
)
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc

logger = logging.getLogger(__name__)

#: The longest a forwarded call may take when the caller set no shorter deadline (seconds).
FORWARD_TIMEOUT_S = 10.0
_ERRORS: dict[grpc.StatusCode, type[RequestError]] = {code: kind for kind, code in STATUS_CODES}


class ForwardError(FaceflowError):
    """The owner failed a forwarded call in a way that is no request error (INTERNAL, UNKNOWN)."""


# -- ListStreams ---------------------------------------------------------------------------------


def merge_streams(
    local: Sequence[aggregator_pb2.StreamInfo], reports: Iterable[Sequence[aggregator_pb2.StreamInfo]]
) -> list[aggregator_pb2.StreamInfo]:
    """Every stream once, sorted by id. During a hand-over two replicas may both report a stream:
    the one further along (more frames, then a later seq) wins, as the new owner catches up."""
    best: dict[str, aggregator_pb2.StreamInfo] = {}
    for report in (local, *reports):
        for info in report:
            current = best.get(info.stream_id)
            if current is None or (info.frames, info.last_seq) > (current.frames, current.last_seq):
                best[info.stream_id] = info
    return [best[stream_id] for stream_id in sorted(best)]


# -- the router --------------------------------------------------------------------------------------


class _OwnerUnavailable(Exception):  # noqa: N818 - internal signal, never raised to a caller
    def __init__(self, owner: Member, details: str) -> None:
        super().__init__(details)
        self.owner = owner
        self.details = details


@dataclass
class RouterStats:
    """Calls this replica sent to owners, and forwarded calls it answered."""

    forwarded_out: int = 0
    forwarded_in: int = 0
    retries: int = 0


class Router:
    """Decides, per call, whether this replica answers or which replica does, and forwards.

    Args:
        watch: the group's membership (addresses and assignments).
        partitions: partitions of the analyses topic (what the producers hash keys over).
        owned: the partitions this replica's consumer holds now.
        address: this replica's advertised address ("" until its server is bound).
        transport: how to reach the other replicas.
    """

    def __init__(
        self,
        *,
        watch: GroupWatch,
        partitions: int,
        owned: Callable[[], set[int]],
        address: Callable[[], str],
        transport: PeerTransport,
        timeout_s: float = FORWARD_TIMEOUT_S,
    ) -> None:
        self.watch = watch
        self.partitions = partitions
        self.owned = owned
        self.address = address
        self.transport = transport
        self.timeout_s = timeout_s
        self.stats = RouterStats()
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[grpc.Channel, aggregator_pb2_grpc.AggregatorStub]] = {}
        self._closed = False

    # -- decisions ---------------------------------------------------------------------------------
    def partition_of(self, stream_id: str) -> int:
        return key_partition(stream_id.encode(), self.partitions)

    def owner(self, stream_id: str, *, refresh: bool = False) -> Member | None:
        """The member to forward ``stream_id``'s calls to; None when this replica answers.

        Raises:
            Unavailable: the membership cannot be read, nobody owns the partition (a rebalance),
                or its owner advertises no address.
        """
        partition = self.partition_of(stream_id)
        if partition in self.owned():
            return None
        try:
            membership = self.watch.refresh() if refresh else self.watch.get()
            owner = membership.owner_of(partition)
            if owner is None and not refresh:
                membership = self.watch.refresh()
                owner = membership.owner_of(partition)
        except MembershipUnavailable as exc:
            raise Unavailable(f"cannot tell which replica owns stream {stream_id!r}: {exc}; retry") from None
        return self._decide(stream_id, partition, membership, owner)

    def _decide(
        self, stream_id: str, partition: int, membership: Membership, owner: Member | None
    ) -> Member | None:
        if partition in self.owned() or (owner is not None and owner.address == self.address()):
            return None  # ours (the snapshot may lag our own assignment): answered here
        if owner is None:
            raise Unavailable(
                f"stream {stream_id!r}: partition {partition} has no owner in group {membership.group!r} "
                f"right now ({membership.state or 'no members'}: a rebalance); retry"
            )
        if not owner.address:
            raise Unavailable(
                f"stream {stream_id!r}: partition {partition} is owned by group member {owner.member_id}, "
                "which advertises no gRPC address (an aggregator older than forwarding?); retry on it"
            )
        return owner

    # -- forwarding --------------------------------------------------------------------------------
    def forward(self, method: str, stream_id: str, request: Any, context: Any) -> Any | None:
        """The owner's answer to ``method(request)``, or None when this replica answers itself.

        Raises:
            RequestError: the owner's error, with its code and message; Unavailable when the owner
                (after one membership refresh) does not answer.
        """
        metadata = context.invocation_metadata()
        if is_forwarded(metadata):
            with self._lock:
                self.stats.forwarded_in += 1
            partition = self.partition_of(stream_id)
            if partition not in self.owned():
                # The origin's membership is stale (a rebalance moved the partition): UNAVAILABLE
                # makes it refresh and retry on the new owner, where NOT_FOUND would be final.
                raise Unavailable(
                    f"stream {stream_id!r}: partition {partition} is no longer owned by the replica at "
                    f"{self.address()}; the forwarding replica refreshes the membership and retries"
                )
            return None
        owner = self.owner(stream_id)
        if owner is None:
            return None
        try:
            return self._call(owner, method, request, context)
        except _OwnerUnavailable as first:
            logger.info(
                "stream %s: owner %s unavailable (%s); refreshing the membership",
                stream_id,
                owner.address,
                first,
            )
            with self._lock:
                self.stats.retries += 1
            again = self.owner(stream_id, refresh=True)
            if again is None:
                return None
            try:
                return self._call(again, method, request, context)
            except _OwnerUnavailable as exc:
                raise Unavailable(
                    f"stream {stream_id!r} (partition {self.partition_of(stream_id)}) is owned by the "
                    f"replica at {again.address}, which does not answer: {exc.details}; retry"
                ) from None

    def peer_streams(
        self, request: aggregator_pb2.ListStreamsRequest, context: Any
    ) -> list[list[aggregator_pb2.StreamInfo]]:
        """Every other member's ListStreams (forwarded, so answered from each one's own state);
        nothing for a forwarded call. A member that does not answer: one refresh, one retry.

        Raises:
            Unavailable: the membership cannot be read, or a member owning partitions does not
                answer (a partial list would hide its streams).
        """
        if is_forwarded(context.invocation_metadata()):
            with self._lock:
                self.stats.forwarded_in += 1
            return []
        try:
            return self._fan_out(self._peers(refresh=False), request, context)
        except _OwnerUnavailable as first:
            logger.info(
                "ListStreams: %s unavailable (%s); refreshing the membership", first.owner.address, first
            )
            with self._lock:
                self.stats.retries += 1
            try:
                return self._fan_out(self._peers(refresh=True), request, context)
            except _OwnerUnavailable as exc:
                raise Unavailable(
                    f"ListStreams: the replica at {exc.owner.address} (partitions "
                    f"{sorted(exc.owner.partitions)}) does not answer: {exc.details}; retry"
                ) from None

    def _peers(self, *, refresh: bool) -> list[Member]:
        try:
            membership = self.watch.refresh() if refresh else self.watch.get()
        except MembershipUnavailable as exc:
            raise Unavailable(f"ListStreams: cannot list the replicas: {exc}; retry") from None
        me, owned = self.address(), self.owned()
        peers = []
        for member in membership.members:
            if not member.partitions or member.address == me or member.partitions <= owned:
                continue
            if not member.address:
                raise Unavailable(
                    f"ListStreams: group member {member.member_id} owns partitions "
                    f"{sorted(member.partitions)} but advertises no gRPC address (an aggregator older "
                    "than forwarding?); retry"
                )
            peers.append(member)
        return peers

    def _fan_out(
        self, peers: Sequence[Member], request: aggregator_pb2.ListStreamsRequest, context: Any
    ) -> list[list[aggregator_pb2.StreamInfo]]:
        timeout = self._timeout(context)
        metadata = forward_metadata(context.invocation_metadata(), origin=self.address())
        calls = [
            (peer, self._stub(peer.address).ListStreams.future(request, timeout=timeout, metadata=metadata))
            for peer in peers
        ]
        with self._lock:
            self.stats.forwarded_out += len(calls)
        reports, unavailable = [], None
        for peer, call in calls:
            try:
                reports.append(list(call.result().streams))
            except grpc.RpcError as exc:
                error = self._error(peer, exc, timeout)
                if isinstance(error, _OwnerUnavailable):
                    unavailable = unavailable or error
                    continue
                raise error from None
        if unavailable is not None:
            raise unavailable
        return reports

    def _call(self, owner: Member, method: str, request: Any, context: Any) -> Any:
        timeout = self._timeout(context)
        metadata = forward_metadata(context.invocation_metadata(), origin=self.address())
        with self._lock:
            self.stats.forwarded_out += 1
        try:
            return getattr(self._stub(owner.address), method)(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise self._error(owner, exc, timeout) from None

    def _error(self, owner: Member, exc: grpc.RpcError, timeout: float) -> Exception:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = (exc.details() if hasattr(exc, "details") else None) or str(code.name)
        if code is grpc.StatusCode.UNAVAILABLE:
            self._drop(owner.address)
            return _OwnerUnavailable(owner, details)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(
                f"the replica at {owner.address} that owns the stream did not answer within {timeout:.1f} s"
            )
        kind = _ERRORS.get(code)
        if kind is not None:
            return kind(details)
        return ForwardError(f"the replica at {owner.address} answered {code.name}: {details}")

    def _timeout(self, context: Any) -> float:
        remaining = context.time_remaining()
        return self.timeout_s if remaining is None else max(0.05, min(self.timeout_s, remaining))

    # -- channels ----------------------------------------------------------------------------------
    def _stub(self, address: str) -> aggregator_pb2_grpc.AggregatorStub:
        with self._lock:
            if self._closed:
                raise Unavailable("this replica is shutting down; retry on another replica")
            entry = self._channels.get(address)
            if entry is None:
                channel = self.transport.channel(address)
                entry = (channel, aggregator_pb2_grpc.AggregatorStub(channel))
                self._channels[address] = entry
            return entry[1]

    def _drop(self, address: str) -> None:
        """Forget the channel to an owner that did not answer (a new pod may take its address)."""
        with self._lock:
            entry = self._channels.pop(address, None)
        if entry is not None:
            with suppress(Exception):
                entry[0].close()

    def close(self) -> None:
        """Close every channel to the other replicas and the membership's admin client."""
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel, _ in channels:
            with suppress(Exception):
                channel.close()
        self.watch.close()

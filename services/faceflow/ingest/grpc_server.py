"""The gRPC adapter of ingest: ``faceflow.v1.Ingest`` on the shared scaffold.

Health, reflection, graceful stop and the mapping from errors to status codes come from
:mod:`faceflow.service.grpc_server`; the codes ingest answers with, one meaning each:

==================== =========================================================================
INVALID_ARGUMENT     a stream id that breaks the naming rule; a bad ``SourceSpec`` (fps < 0,
                     JPEG quality > 100, unsupported URL scheme, a URI that does not parse, no
                     spec)
PERMISSION_DENIED    ``StartSource`` of a source outside the source policy
                     (:mod:`faceflow.ingest.policy`), decided before the file system is touched
NOT_FOUND            ``StopSource`` of an unknown stream id; ``StartSource`` of a local path
                     inside an allowed folder that does not exist
ALREADY_EXISTS       ``StartSource`` of a stream id whose source is still running; pushing to it
RESOURCE_EXHAUSTED   a pushed image over the frames topic's payload limit (and, from gRPC itself,
                     a message over the server's receive limit)
UNAVAILABLE          the broker cannot be reached, or the service is shutting down
==================== =========================================================================

With a sources topic (:mod:`faceflow.ingest.assignments`), ``ListSources`` lists every recorded
source with its ``owner``: this replica's own, and the others' as their owners report them
(``ListSources`` with ``local_only``, asked with the caller's metadata, two seconds each); a source
whose owner does not answer, or that no replica owns now, is listed from its record as
``WAITING`` with the reason in ``last_error``.

A frame that is not a picture is *not* a call error: ``PushFrames`` lists it in the reply's
rejections and goes on (see :mod:`faceflow.ingest.push`). A ``PushFrames`` call that ends with an
error carries the trailing metadata :data:`FRAMES_TAKEN_KEY` (``faceflow-frames-taken``): how
many of its frames were taken before the error; its status message ends with the same number.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

from faceflow.ingest.assignments import Entry, SourceAssignments
from faceflow.ingest.config import SourceConfig
from faceflow.ingest.errors import IngestConfigError, client_text
from faceflow.ingest.push import PushTally
from faceflow.ingest.runner import SourceSnapshot, SourceState
from faceflow.ingest.service import IngestService
from faceflow.service.grpc_server import GrpcServer, ServerSettings, ServiceBinding, trace_parent_of
from faceflow.service.peers import forward_metadata, is_forwarded, peer_transport_from_env
from faceflow.topics import FRAMES_MAX_MESSAGE_BYTES
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME: str = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
#: The largest request the server reads: a frame at the topic's limit plus its envelope.
MAX_RECEIVE_BYTES = FRAMES_MAX_MESSAGE_BYTES
#: The trailing metadata key of a failed ``PushFrames`` call: how many of its frames were taken.
FRAMES_TAKEN_KEY = "faceflow-frames-taken"
#: How long ``ListSources`` waits for each other replica's own list.
PEER_TIMEOUT_S = 2.0

_STATES = {
    SourceState.STARTING: ingest_pb2.SOURCE_STATE_STARTING,
    SourceState.RUNNING: ingest_pb2.SOURCE_STATE_RUNNING,
    SourceState.RECONNECTING: ingest_pb2.SOURCE_STATE_RECONNECTING,
    SourceState.ENDED: ingest_pb2.SOURCE_STATE_ENDED,
    SourceState.FAILED: ingest_pb2.SOURCE_STATE_FAILED,
    SourceState.STOPPED: ingest_pb2.SOURCE_STATE_STOPPED,
    SourceState.WAITING: ingest_pb2.SOURCE_STATE_WAITING,
}
_ACTIVE = frozenset(
    {ingest_pb2.SOURCE_STATE_STARTING, ingest_pb2.SOURCE_STATE_RUNNING, ingest_pb2.SOURCE_STATE_RECONNECTING}
)


def to_status(snapshot: SourceSnapshot) -> ingest_pb2.SourceStatus:
    """The proto ``SourceStatus`` of a source snapshot (URL passwords redacted, ``last_error``
    without object reprs)."""
    return ingest_pb2.SourceStatus(
        spec=snapshot.spec.to_proto(),
        state=_STATES[snapshot.state],
        frames_decoded=snapshot.frames_decoded,
        frames_produced=snapshot.frames_produced,
        frames_dropped=snapshot.frames_dropped,
        next_seq=snapshot.next_seq,
        reconnects=snapshot.reconnects,
        last_error=client_text(snapshot.last_error),
        owner=snapshot.owner,
        live=bool(snapshot.live),
    )


def _record_status(entry: Entry, owner: str, reason: str) -> ingest_pb2.SourceStatus:
    """The status of a source known only from its record (finished, or its owner did not say)."""
    record = entry.record
    if record.final_state is not None:
        state, error, owner = _STATES[record.final_state], record.last_error, record.written_by or owner
    else:
        state, error = ingest_pb2.SOURCE_STATE_WAITING, reason
    return ingest_pb2.SourceStatus(
        spec=record.spec.to_proto(), state=state, last_error=client_text(error), owner=owner
    )


class IngestServicer(ingest_pb2_grpc.IngestServicer):
    """``faceflow.v1.Ingest`` over an :class:`IngestService` (errors map to codes in the scaffold)."""

    def __init__(self, service: IngestService) -> None:
        self.service = service
        self._stubs: dict[str, ingest_pb2_grpc.IngestStub] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs_lock = threading.Lock()

    def PushFrames(self, request_iterator: Any, context: Any) -> ingest_pb2.PushFramesResponse:
        tally = PushTally()
        try:
            return self.service.push(request_iterator, trace=trace_parent_of(context), tally=tally)
        except Exception:
            context.set_trailing_metadata(((FRAMES_TAKEN_KEY, str(tally.taken)),))
            raise

    def StartSource(
        self, request: ingest_pb2.StartSourceRequest, context: Any
    ) -> ingest_pb2.StartSourceResponse:
        if not request.HasField("spec"):
            raise IngestConfigError("spec: expected a SourceSpec, got none")
        spec = SourceConfig.from_proto(request.spec, self.service.config)
        return ingest_pb2.StartSourceResponse(status=to_status(self.service.request_source(spec)))

    def StopSource(
        self, request: ingest_pb2.StopSourceRequest, context: Any
    ) -> ingest_pb2.StopSourceResponse:
        return ingest_pb2.StopSourceResponse(status=to_status(self.service.stop_source(request.stream_id)))

    def ListSources(
        self, request: ingest_pb2.ListSourcesRequest, context: Any
    ) -> ingest_pb2.ListSourcesResponse:
        local = [to_status(s) for s in self.service.list_sources()]
        assignments = self.service.assignments
        if assignments is None or request.local_only or is_forwarded(context.invocation_metadata()):
            return ingest_pb2.ListSourcesResponse(sources=local)
        return ingest_pb2.ListSourcesResponse(sources=self._everyone(assignments, local, context))

    def _everyone(
        self, assignments: SourceAssignments, local: list[ingest_pb2.SourceStatus], context: Any
    ) -> list[ingest_pb2.SourceStatus]:
        """Every recorded source, each as its owner reports it (module docstring)."""
        entries = assignments.table.entries()
        owners = assignments.owners()
        me = assignments.advertised
        mine = {s.spec.stream_id: s for s in local}
        reports: dict[str, dict[str, ingest_pb2.SourceStatus]] = {}
        failures: dict[str, str] = {}
        metadata = forward_metadata(context.invocation_metadata(), origin=me)
        calls = {  # every peer at once: N silent peers cost one timeout, not N
            address: self._stub(address).ListSources.future(
                ingest_pb2.ListSourcesRequest(local_only=True), timeout=PEER_TIMEOUT_S, metadata=metadata
            )
            for address in sorted({owners.get(e.partition, "") for e in entries} - {"", me})
        }
        for address, call in calls.items():
            try:
                reply = call.result()
            except grpc.RpcError as exc:
                failures[address] = f"{exc.code().name}: {exc.details()}"
                logger.warning("ListSources: replica %s did not answer: %s", address, failures[address])
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self._drop(address)  # a pod that went away: its IP may never come back
                continue
            reports[address] = {s.spec.stream_id: s for s in reply.sources}
        out = []
        for entry in entries:
            owner = owners.get(entry.partition, "")
            report = mine if owner == me else reports.get(owner, {})
            status = report.get(entry.stream_id)
            if status is not None and not (entry.record.finished and status.state in _ACTIVE):
                out.append(status)
                continue
            if not owner:
                reason = f"no ingest replica owns partition {entry.partition} of {assignments.topic} now"
            elif owner in failures:
                reason = f"its owner {owner} did not answer: {failures[owner]}"
            else:
                reason = f"its owner {owner} has not started it yet"
            out.append(_record_status(entry, owner, reason))
        return out

    def _stub(self, address: str) -> ingest_pb2_grpc.IngestStub:
        with self._stubs_lock:
            stub = self._stubs.get(address)
            if stub is None:
                channel = self._channels[address] = peer_transport_from_env().channel(address)
                stub = self._stubs[address] = ingest_pb2_grpc.IngestStub(channel)
            return stub

    def _drop(self, address: str) -> None:
        """Close the channel to a replica that did not answer (the next call opens a new one)."""
        with self._stubs_lock:
            self._stubs.pop(address, None)
            channel = self._channels.pop(address, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        """Close the channels to other replicas."""
        with self._stubs_lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()


class IngestServer:
    """The gRPC server of one :class:`IngestService`, with health and reflection.

    Args:
        service: what the RPCs call.
        host, port: where to listen; port 0 picks a free one (see :attr:`port` after :meth:`start`).
        workers: threads serving RPCs (each open ``PushFrames`` call holds one).
    """

    def __init__(self, service: IngestService, host: str, port: int, *, workers: int = 16) -> None:
        self.service = service
        self.servicer = IngestServicer(service)
        self.server = GrpcServer(
            "ingest",
            ServerSettings(host=host, port=port, workers=workers, max_receive_bytes=MAX_RECEIVE_BYTES),
            [ServiceBinding(SERVICE_NAME, ingest_pb2_grpc.add_IngestServicer_to_server, self.servicer)],
            metrics=service.metrics.base,
        )

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def health(self) -> Any:
        return self.server.health

    def start(self) -> int:
        """Listen and serve; return the bound port.

        Raises:
            ServiceStartError: the address cannot be bound (port taken).
        """
        return self.server.start()

    def stop(self, grace_s: float) -> threading.Event:
        """Report NOT_SERVING, refuse new RPCs, give running ones ``grace_s``; returns when done."""
        stopped = self.server.stop(grace_s)
        self.servicer.close()
        return stopped

"""``faceflow.v1.Aggregator`` over the aggregator's state, gallery and faces topic.

Status codes (the shared scaffold maps the errors raised here):

==================== =========================================================================
INVALID_ARGUMENT     a bad stream id, filter, start position, page size or token, name, or a
                     photo that shows no face or several (the message names the photo)
NOT_FOUND            a stream no replica has state for, an unknown track or identity
RESOURCE_EXHAUSTED   too many subscribers on this replica; too many or too large photos
UNAVAILABLE          Triton (enrolment) or the broker (gallery writes) cannot answer now; the
                     replica that owns the stream does not answer, or nobody owns it (rebalance)
==================== =========================================================================

Every gallery change (EnrollIdentity, NameIdentity, ForgetIdentity) also writes one record per
identity to the audit topic, after the gallery write succeeded (:mod:`faceflow.aggregator.audit`).

Any replica answers every method for any stream. Tracks and streams live on the replica that owns
the stream (its analyses partition); another replica forwards the call there
(:mod:`faceflow.aggregator.routing`), and ListStreams merges every replica's. Subscribe and the
gallery are served from the topics every replica reads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind

from faceflow.aggregator.audit import AuditAction, AuditLog, default_replica
from faceflow.aggregator.events import track_message
from faceflow.aggregator.gallery import KINDS, GallerySync, set_times
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.aggregator.routing import Router, merge_streams
from faceflow.aggregator.subscriptions import Filter, Hub, Replay, stream_items
from faceflow.core.identity import Gallery, IdentityEntry, IdentityKind, add_exemplars, new_identity_id
from faceflow.errors import InvalidArgument, NotFound, ResourceExhausted
from faceflow.models.contract import FrameStatus
from faceflow.service.tracing import child_span, traceparent_of_headers
from faceflow.service.triton import FaceModels
from faceflow.streams import InvalidStreamId, validate_stream_id
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME: str = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"].full_name
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_PHOTOS = 20
MAX_PHOTO_BYTES = 8 * 1024 * 1024
MAX_NAME = 200
_NAME = re.compile(r"[^\x00-\x1f\x7f]+")


def _stream_id(value: str, field: str = "stream_id") -> str:
    try:
        return validate_stream_id(value)
    except InvalidStreamId as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        raise InvalidArgument(f"name: expected 1..{MAX_NAME} printable characters, got {value[:80]!r}")
    return name


def identity_message(entry: IdentityEntry) -> aggregator_pb2.Identity:
    out = aggregator_pb2.Identity(
        identity_id=entry.identity_id,
        name=entry.name,
        kind=KINDS[entry.kind],
        embeddings=entry.num_exemplars,
        source=entry.source,
        origin_stream=entry.origin_stream,
    )
    set_times(out, entry)
    return out


class AggregatorServicer(aggregator_pb2_grpc.AggregatorServicer):
    """See the module docstring.

    ``audit`` writes the gallery's audit records. Left out, the servicer writes them with the
    gallery's producer (``sync.producer``) to the configured ``audit_topic`` (the processor's
    config); there is no way to serve the gallery without an audit.
    """

    def __init__(
        self,
        *,
        processor: AggregatorProcessor,
        gallery: Gallery,
        lock: threading.RLock,
        sync: GallerySync,
        hub: Hub,
        bootstrap: str,
        faces_topic: str,
        subscriber_queue: int,
        triton: Callable[[], FaceModels],
        partitions: Callable[[], set[int]],
        router: Router | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.processor = processor
        self.gallery = gallery
        self.lock = lock
        self.sync = sync
        self.hub = hub
        self.bootstrap = bootstrap
        self.faces_topic = faces_topic
        self.subscriber_queue = subscriber_queue
        self.triton = triton
        self.partitions = partitions
        self.router = router
        self.audit = self._audit_log(audit)

    def _audit_log(self, audit: AuditLog | None) -> AuditLog:
        if audit is not None:
            return audit
        config = self.processor.config
        router = self.router

        def replica() -> str:
            return default_replica(config.instance_id, router.address() if router is not None else "")

        return AuditLog(self.sync.producer, config.audit_topic, replica=replica)

    def _audited(self, action: AuditAction, identity_id: str, context: Any, **fields: Any) -> None:
        """One audit record for a change that has been made (never undone if the audit fails)."""
        self.audit.record(action, identity_id, context, **fields)

    # -- events ----------------------------------------------------------------------------------
    def Subscribe(
        self, request: aggregator_pb2.SubscribeRequest, context: Any
    ) -> Iterator[aggregator_pb2.SubscribeResponse]:
        filter_ = Filter.from_request(request)
        start = request.start
        replay = None
        if start.WhichOneof("position") not in (None, "latest"):
            replay = Replay(self.bootstrap, self.faces_topic, filter_, start, capacity=self.subscriber_queue)
            sub = replay.sub
        else:
            sub = self.hub.subscribe(filter_)
        logger.info("subscriber %s: %s", context.peer(), "replay" if replay else "live")
        try:
            for item in stream_items(sub, context.is_active):
                if isinstance(item, int):
                    yield aggregator_pb2.SubscribeResponse(gap=aggregator_pb2.Gap(dropped=item))
                    continue
                with child_span(
                    "deliver event",
                    traceparent_of_headers(item.headers),
                    kind=SpanKind.PRODUCER,
                    attributes={"faceflow.stream_id": item.event.stream_id, "faceflow.seq": item.event.seq},
                    component="faceflow.aggregator",
                ):
                    yield aggregator_pb2.SubscribeResponse(
                        event=filter_.shaped(item.event), partition=item.partition, offset=item.offset
                    )
        finally:
            if replay is not None:
                replay.close()
            else:
                self.hub.unsubscribe(sub)

    # -- tracks and streams ----------------------------------------------------------------------
    def _forwarded(self, method: str, stream_id: str, request: Any, context: Any) -> Any | None:
        """The owner's answer when another replica owns the stream; None when this one answers."""
        sid = _stream_id(stream_id)
        return None if self.router is None else self.router.forward(method, sid, request, context)

    def _owned(self, stream_id: str) -> Any:
        owned = self.processor.stream(_stream_id(stream_id))
        if owned is None:
            raise NotFound(
                f"stream {stream_id!r} is not owned by this replica (partitions {sorted(self.partitions())}) "
                "or has sent nothing yet"
            )
        return owned

    def GetTrack(
        self, request: aggregator_pb2.GetTrackRequest, context: Any
    ) -> aggregator_pb2.GetTrackResponse:
        answer = self._forwarded("GetTrack", request.stream_id, request, context)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        with self.lock:
            owned = self._owned(request.stream_id)
            summary = owned.analytics.track(request.track_id)
            if summary is None:
                raise NotFound(f"stream {request.stream_id!r} has no track {request.track_id[:80]!r}")
            return aggregator_pb2.GetTrackResponse(track=track_message(request.stream_id, summary))

    def ListTracks(
        self, request: aggregator_pb2.ListTracksRequest, context: Any
    ) -> aggregator_pb2.ListTracksResponse:
        answer = self._forwarded("ListTracks", request.stream_id, request, context)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        size = request.page_size or DEFAULT_PAGE
        if size > MAX_PAGE:
            raise InvalidArgument(f"page_size: expected at most {MAX_PAGE}, got {request.page_size}")
        try:
            start = int(request.page_token or "0")
        except ValueError:
            raise InvalidArgument(
                f"page_token: expected a token from a previous reply, got {request.page_token[:40]!r}"
            ) from None
        if start < 0:
            raise InvalidArgument(
                f"page_token: expected a token from a previous reply, got {request.page_token!r}"
            )
        with self.lock:
            owned = self._owned(request.stream_id)
            summaries = owned.analytics.track_summaries(active_only=request.active_only)
            page = [track_message(request.stream_id, s) for s in summaries[start : start + size]]
        token = str(start + size) if start + size < len(summaries) else ""
        return aggregator_pb2.ListTracksResponse(tracks=page, next_page_token=token)

    def _stream_info(self, stream_id: str, owned: Any) -> aggregator_pb2.StreamInfo:
        a = owned.analytics
        info = aggregator_pb2.StreamInfo(
            stream_id=stream_id,
            frames=a.frames,
            faces=a.faces,
            active_tracks=len(a.tracks),
            total_tracks=a.total_tracks,
            last_seq=max(0, a.last_seq),
            ended=a.stream_ended,
            partition=owned.partition,
            duplicates=a.duplicates,
        )
        info.last_capture_time.FromNanoseconds(a.last_capture_ns)
        return info

    def GetStream(
        self, request: aggregator_pb2.GetStreamRequest, context: Any
    ) -> aggregator_pb2.GetStreamResponse:
        answer = self._forwarded("GetStream", request.stream_id, request, context)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        with self.lock:
            return aggregator_pb2.GetStreamResponse(
                stream=self._stream_info(request.stream_id, self._owned(request.stream_id))
            )

    def ListStreams(
        self, request: aggregator_pb2.ListStreamsRequest, context: Any
    ) -> aggregator_pb2.ListStreamsResponse:
        with self.lock:
            streams = [self._stream_info(sid, owned) for sid, owned in self.processor.owned()]
        peers = [] if self.router is None else self.router.peer_streams(request, context)
        return aggregator_pb2.ListStreamsResponse(streams=merge_streams(streams, peers))

    # -- identities -------------------------------------------------------------------------------
    def EnrollIdentity(
        self, request: aggregator_pb2.EnrollIdentityRequest, context: Any
    ) -> aggregator_pb2.EnrollIdentityResponse:
        name = _name(request.name)
        images = list(request.images)
        if not images:
            raise InvalidArgument("images: expected 1 or more photos, got none")
        if len(images) > MAX_PHOTOS:
            raise ResourceExhausted(f"images: expected at most {MAX_PHOTOS} photos, got {len(images)}")
        for i, image in enumerate(images):
            if len(image) > MAX_PHOTO_BYTES:
                raise ResourceExhausted(f"image {i}: {len(image)} bytes, expected at most {MAX_PHOTO_BYTES}")
        answer = self.triton().pipeline(images)
        detected = answer.detected
        for i in range(len(images)):
            status = detected.status(i)
            faces = len(detected.faces_of(i))
            if status in (FrameStatus.UNDECODABLE, FrameStatus.TOO_LARGE):
                raise InvalidArgument(
                    f"image {i}: {status.name.lower().replace('_', ' ')}: expected a JPEG or PNG photo"
                )
            if faces != 1:
                found = "no face" if faces == 0 else f"{faces} faces"
                raise InvalidArgument(f"image {i}: {found} found; expected exactly one face per photo")
        embeddings = np.asarray(answer.analyses.embedding, np.float32)
        now = time.time()
        if request.identity_id:
            with self.lock:
                current = self.gallery.get(request.identity_id)
            if current is None:
                raise NotFound(f"no identity {request.identity_id[:80]!r} to add photos to")
            entry = add_exemplars(current, embeddings, now_s=now)
            if entry.name != name:
                entry = entry.with_name(name, now_s=now)
        else:
            entry = IdentityEntry(
                identity_id=new_identity_id(name, time.time_ns()),
                name=name,
                kind=IdentityKind.ENROLLED,
                embeddings=embeddings,
                origin_stream="",
                source=f"photos:{len(images)}",
                created_s=now,
                updated_s=now,
                last_seen_s=now,
            )
        self.sync.publish(entry)
        logger.info("enrolled %s as %s from %d photos", entry.identity_id, name, len(images))
        action = AuditAction.ADD_PHOTOS if request.identity_id else AuditAction.ENROLL
        self._audited(action, entry.identity_id, context, name=entry.name, photos=len(images))
        return aggregator_pb2.EnrollIdentityResponse(identity=identity_message(entry))

    def NameIdentity(
        self, request: aggregator_pb2.NameIdentityRequest, context: Any
    ) -> aggregator_pb2.NameIdentityResponse:
        name = _name(request.name)
        with self.lock:
            entry = self.gallery.get(request.identity_id)
        if entry is None:
            raise NotFound(f"no identity {request.identity_id[:80]!r}")
        named = entry.with_name(name, now_s=time.time())
        self.sync.publish(named)
        logger.info("identity %s named %s (%d exemplars)", named.identity_id, name, named.num_exemplars)
        self._audited(AuditAction.NAME, named.identity_id, context, name=named.name)
        return aggregator_pb2.NameIdentityResponse(identity=identity_message(named))

    def ListIdentities(
        self, request: aggregator_pb2.ListIdentitiesRequest, context: Any
    ) -> aggregator_pb2.ListIdentitiesResponse:
        with self.lock:
            entries = self.gallery.entries()
        shown = [e for e in entries if request.include_anonymous or e.kind is not IdentityKind.ANONYMOUS]
        return aggregator_pb2.ListIdentitiesResponse(identities=[identity_message(e) for e in shown])

    def GetIdentity(
        self, request: aggregator_pb2.GetIdentityRequest, context: Any
    ) -> aggregator_pb2.GetIdentityResponse:
        with self.lock:
            entry = self.gallery.get(request.identity_id)
        if entry is None:
            raise NotFound(f"no identity {request.identity_id[:80]!r}")
        return aggregator_pb2.GetIdentityResponse(identity=identity_message(entry))

    def ForgetIdentity(
        self, request: aggregator_pb2.ForgetIdentityRequest, context: Any
    ) -> aggregator_pb2.ForgetIdentityResponse:
        wanted = request.identity.strip()
        if not wanted:
            raise InvalidArgument("identity: expected an identity id or a name, got ''")
        with self.lock:
            entry = self.gallery.get(wanted)
            ids = (
                [entry.identity_id]
                if entry is not None
                else [e.identity_id for e in self.gallery.by_name(wanted)]
            )
        if not ids:
            raise NotFound(f"no identity with the id or name {wanted[:80]!r}")
        # The audit keeps what was asked for only when it was the id: a name asked for would keep the
        # erased person's name on a year-long topic (docs/privacy.md).
        requested = wanted if entry is not None else "(by name)"
        for identity_id in ids:
            self.sync.forget(identity_id)
            self._audited(AuditAction.FORGET, identity_id, context, requested=requested)
        logger.info("forgot identities %s", ids)
        return aggregator_pb2.ForgetIdentityResponse(forgotten_ids=ids)

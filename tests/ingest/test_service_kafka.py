"""Several sources of every kind at once into the real broker, consumed back and checked."""

from __future__ import annotations

import pytest
from support_ingest import (
    Consumed,
    astronaut_jpeg,
    consume,
    create_frames_topic,
    has_end,
    ingest_config,
    of_stream,
    running_service,
    wait_until,
)

from faceflow.ingest.runner import SourceState
from faceflow.kafka.headers import TraceParent
from faceflow.v1 import ingest_pb2

pytestmark = pytest.mark.integration

FINITE = ("clip-mp4", "clip-mkv", "clip-ts", "photos")
LIVE = ("http-1", "http-2")


def test_every_kind_of_source_at_once(
    kafka_bootstrap: str, unique_name: str, media: object, stream_server: object, closed_port: int
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    config = ingest_config(
        kafka_bootstrap, topic, target_fps=5.0, max_reconnect_attempts=2, folder_fps=2.0, seq_start="zero"
    )
    uris = {
        "clip-mp4": str(media.mp4),  # type: ignore[attr-defined]
        "clip-mkv": str(media.mkv),  # type: ignore[attr-defined]
        "clip-ts": str(media.ts),  # type: ignore[attr-defined]
        "photos": str(media.folder),  # type: ignore[attr-defined]
        "http-1": stream_server.url("/live"),  # type: ignore[attr-defined]
        "http-2": stream_server.url("/live"),  # type: ignore[attr-defined]
        "dead-url": f"rtsp://127.0.0.1:{closed_port}/cam",
        "empty-file": str(media.zero),  # type: ignore[attr-defined]
        "corrupt-file": str(media.random),  # type: ignore[attr-defined]
    }
    with running_service(config) as service:
        for stream_id, uri in uris.items():
            service.start_source(config.source(stream_id, uri))
        reply = service.push(
            [ingest_pb2.PushFramesRequest(stream_id="edge-1", image=astronaut_jpeg()) for _ in range(3)]
            + [ingest_pb2.PushFramesRequest(stream_id="edge-1", end_of_stream=True)]
        )
        assert (reply.accepted, reply.rejected) == (3, 0)
        wait_until(
            lambda: (
                all(service.source(s).reconnects >= 2 for s in LIVE)
                and all(service.source(s).state is SourceState.ENDED for s in FINITE)
                and not any(
                    service.source(s).state.active for s in ("dead-url", "empty-file", "corrupt-file")
                )
            ),
            timeout_s=60,
            what="files to end, live URLs to reconnect twice, bad sources to fail",
        )
        for stream_id in LIVE:
            service.stop_source(stream_id)
        status = {s.spec.stream_id: s for s in service.list_sources()}

    assert status["dead-url"].state is SourceState.FAILED
    assert "Connection refused" in status["dead-url"].last_error
    assert "not a decodable video" in status["empty-file"].last_error
    assert status["corrupt-file"].state is SourceState.FAILED

    def complete(rs: list[Consumed]) -> bool:
        return all(has_end(s)(rs) for s in (*FINITE, "edge-1")) and all(
            len(of_stream(rs, s)) >= status[s].frames_produced for s in LIVE
        )

    records = consume(kafka_bootstrap, topic, until=complete)
    for record in records:
        assert record.key == record.frame.stream_id.encode()
        assert record.headers["content-type"] == b"application/x-protobuf; type=faceflow.v1.Frame"
        TraceParent.parse(record.headers["traceparent"])
    for stream_id, expected in (
        ("clip-mp4", 10),
        ("clip-mkv", 10),
        ("clip-ts", 10),
        ("photos", 3),
        ("edge-1", 3),
    ):
        frames = of_stream(records, stream_id)
        seqs = [f.seq for f in frames]
        assert seqs == list(range(seqs[0], seqs[0] + expected + 1)), stream_id  # continuous, marker last
        assert [f.end_of_stream for f in frames] == [False] * expected + [True], stream_id
        assert (
            len({(r.partition) for r in records if r.key == stream_id.encode()}) == 1
        )  # one partition per key
    photos = of_stream(records, "photos")
    assert [f.pts.ToNanoseconds() for f in photos[:3]] == [0, 500_000_000, 1_000_000_000]
    for stream_id in LIVE:
        frames = of_stream(records, stream_id)
        seqs = [f.seq for f in frames]
        assert seqs == sorted(set(seqs)), f"{stream_id}: seq must increase across reconnects"
        # Nothing is lost silently: every seq handed out was either produced or counted as dropped.
        assert len(seqs) + status[stream_id].frames_dropped == status[stream_id].next_seq
        assert len(frames) == status[stream_id].frames_produced > 2 * 10  # at least three plays of the clip
        assert not any(f.end_of_stream for f in frames)
        assert all(f.capture_time.ToNanoseconds() > 0 for f in frames)
    for stream_id in ("dead-url", "empty-file", "corrupt-file"):
        assert of_stream(records, stream_id) == []

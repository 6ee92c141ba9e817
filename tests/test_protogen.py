"""The committed generated code must match what the pinned generator makes from protos/."""

from __future__ import annotations

from faceflow import protogen
from faceflow.v1 import aggregator_pb2, analysis_pb2, face_event_pb2, frame_pb2, ingest_pb2


def test_generated_code_is_up_to_date() -> None:
    stale = protogen.stale_files()
    assert stale == [], f"run `make protos`: stale generated files {stale}"


def test_contract_services_and_messages_exist() -> None:
    ingest = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"]
    assert [m.name for m in ingest.methods] == ["PushFrames", "StartSource", "StopSource", "ListSources"]
    assert ingest.methods_by_name["PushFrames"].client_streaming
    agg = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"]
    assert [m.name for m in agg.methods] == [
        "Subscribe",
        "GetTrack",
        "ListTracks",
        "GetStream",
        "ListStreams",
        "EnrollIdentity",
        "NameIdentity",
        "ListIdentities",
        "GetIdentity",
        "ForgetIdentity",
    ]
    assert agg.methods_by_name["Subscribe"].server_streaming
    face = analysis_pb2.FaceAnalysis.DESCRIPTOR.fields_by_name
    for field in (
        "box",
        "score",
        "keypoints5",
        "crop_box",
        "landmarks68",
        "head_pose",
        "attributes",
        "visibility",
        "age",
        "gender",
        "race",
        "parsing",
        "embedding",
        "analyzed",
        "results_seq",
    ):
        assert field in face, field
    assert "models" in analysis_pb2.FrameAnalysis.DESCRIPTOR.fields_by_name
    assert "timings" in analysis_pb2.FrameAnalysis.DESCRIPTOR.fields_by_name
    event = face_event_pb2.FaceEvent.DESCRIPTOR.fields_by_name
    assert {"raw", "fused", "track_id", "identity_id", "type"} <= set(event)


def test_frame_round_trips_through_bytes() -> None:
    frame = frame_pb2.Frame(stream_id="cam-1", seq=7, image=b"\xff\xd8", content_type="image/jpeg")
    frame.pts.FromMilliseconds(1500)
    assert frame_pb2.Frame.FromString(frame.SerializeToString()) == frame

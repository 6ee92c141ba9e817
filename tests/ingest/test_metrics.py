"""Tests for faceflow.ingest.metrics: instruments, the Prometheus endpoint, the periodic drop log."""

from __future__ import annotations

import logging
import urllib.request

import pytest

from faceflow.ingest.metrics import DropCause, GaugeReading, IngestMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample (labels must all match), or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_counters_gauges_and_histogram_are_exported() -> None:
    metrics = IngestMetrics(lambda: [GaugeReading("cam-1", 3, 12.5)])
    try:
        metrics.frame_in("cam-1", 4)
        metrics.produced("cam-1", 0.004)
        metrics.drop("cam-1", DropCause.QUEUE_OLDEST, 2)
        metrics.drop("cam-1", DropCause.TOO_LARGE)
        metrics.reconnect("cam-1")
        metrics.shot_cut("cam-1")
        metrics.shot_cut("cam-1")
        text = metrics.render()
    finally:
        metrics.shutdown()
    assert sample(text, "faceflow_ingest_frames_in_total", stream_id="cam-1") == 4
    assert sample(text, "faceflow_ingest_frames_produced_total", stream_id="cam-1") == 1
    assert sample(text, "faceflow_ingest_frames_dropped_total", stream_id="cam-1", reason="queue_oldest") == 2
    assert sample(text, "faceflow_ingest_frames_dropped_total", stream_id="cam-1", reason="too_large") == 1
    assert sample(text, "faceflow_ingest_reconnects_total", stream_id="cam-1") == 1
    assert sample(text, "faceflow_ingest_shot_cuts_total", stream_id="cam-1") == 2
    assert sample(text, "faceflow_ingest_produce_latency_seconds_count", stream_id="cam-1") == 1
    assert sample(text, "faceflow_ingest_produce_latency_seconds_bucket", stream_id="cam-1", le="0.005") == 1
    assert sample(text, "faceflow_ingest_queue_depth", stream_id="cam-1") == 3
    assert sample(text, "faceflow_ingest_decode_fps", stream_id="cam-1") == 12.5


def test_two_instances_do_not_share_numbers() -> None:
    a, b = IngestMetrics(), IngestMetrics()
    try:
        a.frame_in("x")
        assert sample(b.render(), "faceflow_ingest_frames_in_total", stream_id="x") is None
    finally:
        a.shutdown()
        b.shutdown()


def test_metrics_endpoint_over_http() -> None:
    metrics = IngestMetrics()
    try:
        port = metrics.serve("127.0.0.1", 0)
        metrics.frame_in("cam-http")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        metrics.shutdown()
    assert sample(text, "faceflow_ingest_frames_in_total", stream_id="cam-http") == 1


def test_drops_are_logged_once_per_interval_per_stream(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    metrics = IngestMetrics(drop_log_interval_s=10.0, clock=clock)
    caplog.set_level(logging.WARNING, logger="faceflow.ingest.metrics")
    try:
        metrics.drop("cam-1", DropCause.QUEUE_OLDEST)  # the first drop of a stream: logged at once
        for _ in range(5):
            metrics.drop("cam-1", DropCause.QUEUE_OLDEST)
        metrics.drop("cam-1", DropCause.BROKER_STALLED)
        assert len(caplog.records) == 1
        clock.now += 10.0
        metrics.drop("cam-1", DropCause.QUEUE_OLDEST)
        assert len(caplog.records) == 2
        assert caplog.records[1].getMessage() == (
            "stream cam-1: dropped 7 frames in the last 10 s (broker_stalled=1, queue_oldest=6); "
            "8 dropped in total"
        )
        metrics.drop("cam-2", DropCause.TOO_LARGE)
        metrics.drop("cam-1", DropCause.QUEUE_OLDEST)
        metrics.flush_drop_log()
        assert (
            caplog.records[-1].getMessage()
            == "stream cam-1: dropped 1 frames (queue_oldest=1); 9 dropped in total"
        )
        assert metrics.dropped_total("cam-1") == 9
        assert metrics.dropped_total("cam-1", DropCause.BROKER_STALLED) == 1
        assert metrics.dropped_total("cam-2") == 1
    finally:
        metrics.shutdown()

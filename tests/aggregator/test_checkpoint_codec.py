"""Checkpoint records: a round trip, and every kind of bad record refused as ValueError (which
read_partition skips with a log line, so one bad record never aborts a restore)."""

from __future__ import annotations

import json
import zlib

import pytest

from faceflow.aggregator.state import CHECKPOINT_VERSION, decode_checkpoint, encode_checkpoint


def test_round_trip() -> None:
    value = encode_checkpoint("cam-1", {"tracks": []}, partition=3, next_offset=42)
    checkpoint = decode_checkpoint(value)
    assert (checkpoint.stream_id, checkpoint.partition, checkpoint.next_offset) == ("cam-1", 3, 42)
    assert checkpoint.snapshot == {"tracks": []}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not zlib", "not an aggregator checkpoint"),
        (zlib.compress(b"{not json"), "not an aggregator checkpoint"),
        (zlib.compress(b"[1, 2]"), "expected a JSON object, got list"),
        (zlib.compress(json.dumps({"version": 999}).encode()), "expected version"),
        (zlib.compress(json.dumps({"version": CHECKPOINT_VERSION}).encode()), "malformed .*stream_id"),
        (
            zlib.compress(
                json.dumps(
                    {"version": CHECKPOINT_VERSION, "stream_id": "s", "partition": "x", "next_offset": 1}
                ).encode()
            ),
            "malformed",
        ),
    ],
)
def test_bad_records_are_value_errors(value: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_checkpoint(value)

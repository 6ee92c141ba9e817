"""faceflow.kafka.compat: the kafka-python 3.0 group-coordinator workarounds.

The integration test is the scenario that broke the analyzer: a group member that polls briefly
and then works between polls (as while a Triton call runs). Without the workaround its second
rebalance (asked for as soon as the topic's metadata arrives) finishes between two polls and is
never applied: the member stays REBALANCING and every commit fails.
"""

from __future__ import annotations

import time
from contextlib import closing
from types import SimpleNamespace

import kafka
import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from faceflow import topics
from faceflow.errors import ConfigError
from faceflow.kafka import admin, compat
from faceflow.kafka.clients import group_consumer, make_producer


def test_no_heartbeat_is_due_while_heartbeats_are_disabled() -> None:
    patched = compat._patch_time_to_next_heartbeat(lambda self: 0.0)
    assert patched(SimpleNamespace(_heartbeat_enabled=False)) == float("inf")
    assert patched(SimpleNamespace(_heartbeat_enabled=True)) == 0.0


def test_a_finished_join_counts_as_a_rejoin_to_apply() -> None:
    patched = compat._patch_need_rejoin(lambda self: False)
    done = SimpleNamespace(is_done=True, exception=None, value=b"")
    failed = SimpleNamespace(is_done=True, exception=RuntimeError("x"), value=None)
    running = SimpleNamespace(is_done=False, exception=None, value=None)
    assert patched(SimpleNamespace(_join_task=done)) is True
    assert patched(SimpleNamespace(_join_task=failed)) is False
    assert patched(SimpleNamespace(_join_task=running)) is False
    assert patched(SimpleNamespace(_join_task=None)) is False


def test_an_unknown_kafka_python_release_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    with pytest.raises(ConfigError, match=r"expected a 3\.0\.x release .* got 3\.1\.0"):
        compat.apply()


@pytest.mark.integration
def test_a_member_that_polls_briefly_with_gaps_joins_and_commits(
    kafka_bootstrap: str, unique_name: str
) -> None:
    admin.ensure_topics(kafka_bootstrap, [topics.FRAMES.renamed(unique_name)])
    with closing(make_producer(kafka_bootstrap, client_id="compat-test")) as producer:
        for i in range(20):
            producer.send(unique_name, key=b"k", value=b"%d" % i)
        producer.flush(30)
    consumer = group_consumer(
        kafka_bootstrap, group_id=unique_name, client_id="compat-test", session_timeout_ms=10_000
    )
    assert compat.applied()
    tp = TopicPartition(unique_name, 0)
    try:
        consumer.subscribe([unique_name])
        consumed = 0
        committed = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            consumed += sum(len(v) for v in consumer.poll(timeout_ms=1, max_records=1).values())
            time.sleep(0.05)  # busy between polls: a join that completes now is applied next poll
            if consumed and consumer.assignment():
                try:
                    consumer.commit({tp: OffsetAndMetadata(consumed, "", -1)})
                except KafkaError:
                    continue  # a rebalance still running: poll again
                committed = consumer.committed(tp)
                if consumed >= 3:
                    break
        assert committed is not None, "no commit succeeded within 30 s: the member never became stable"
        assert committed == consumed
    finally:
        consumer.close(autocommit=False, timeout_ms=5000)

from __future__ import annotations

import pytest

from faceflow import topics
from faceflow.topics import TopicSpec


@pytest.mark.parametrize(
    ("name", "partitions", "error"),
    [
        ("ok.topic", 1, None),
        ("", 1, "expected a topic name"),
        ("x" * 250, 1, "expected a topic name"),
        ("ok.topic", 0, "expected partitions >= 1"),
    ],
)
def test_topic_spec_validation(name: str, partitions: int, error: str | None) -> None:
    if error is None:
        assert TopicSpec(name=name, partitions=partitions).name == name
    else:
        with pytest.raises(ValueError, match=error):
            TopicSpec(name=name, partitions=partitions)


def test_design_topics_are_all_declared_with_explicit_configs() -> None:
    names = {t.name for t in topics.ALL_TOPICS}
    assert names == {
        "faceflow.frames.v1",
        "faceflow.frames.dlq.v1",
        "faceflow.analyses.v1",
        "faceflow.faces.v1",
        "faceflow.faces.json.v1",
        "faceflow.aggregator.state.v1",
        "faceflow.identities.v1",
        "faceflow.identities.audit.v1",
        "faceflow.sources.v1",
    }
    for spec in topics.ALL_TOPICS:
        assert "max.message.bytes" in spec.configs, spec.name
        assert "cleanup.policy" in spec.configs, spec.name
    assert topics.AGGREGATOR_STATE.configs["cleanup.policy"] == "compact"
    assert topics.IDENTITIES.configs["cleanup.policy"] == "compact"
    # The JSON mirror: a stream in the same partition number, kept as long, with room for the text form.
    assert topics.FACES_JSON.partitions == topics.FACES.partitions
    assert topics.FACES_JSON.configs["retention.ms"] == topics.FACES.configs["retention.ms"]
    assert int(topics.FACES_JSON.configs["max.message.bytes"]) > int(
        topics.FACES.configs["max.message.bytes"]
    )
    # Privacy default: raw frames are kept for at most an hour.
    assert int(topics.FRAMES.configs["retention.ms"]) <= topics.HOUR_MS
    assert int(topics.FRAMES.configs["max.message.bytes"]) > topics.FRAME_PAYLOAD_LIMIT


def test_configs_are_immutable_and_renamed_keeps_them() -> None:
    spec = topics.FRAMES.renamed("test.frames")
    assert spec.configs == topics.FRAMES.configs and spec.name == "test.frames"
    with pytest.raises(TypeError):
        spec.configs["retention.ms"] = "1"  # type: ignore[index]


def test_by_name_names_the_known_topics_when_unknown() -> None:
    assert topics.by_name("faceflow.faces.v1") is topics.FACES
    with pytest.raises(KeyError, match=r"faceflow\.frames\.v1"):
        topics.by_name("nope")

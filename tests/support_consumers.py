"""Consumers of faceflow's topics that are not Python, Java and Go: how each is built and run, and
what their tests share (the records they are given, the lines they print).

Java: ``tests/consumers/java/FacesConsumer.java`` runs with the JDK's source launcher, no build
step. Its jars come in two halves: protobuf-java, protobuf-java-util and Kafka Connect's
connect-json are fetched by Maven from ``tests/consumers/java/pom.xml`` into
``<cache>/java-consumer/libs``, the way the local runtime fetches the broker's
(:func:`faceflow.runtime.kafka_broker.copy_dependencies`: same Maven call, same local repository
``<cache>/m2``); kafka-clients and its dependencies are the broker's jars, already fetched, so both
sides speak the same Kafka version.

Go: ``tests/consumers/go/build.sh`` builds it with ``go build`` into ``.cache/bin/faces-consumer-go``
(``make tools`` runs it; idempotent: a binary newer than go.mod, go.sum and main.go is left alone).
:func:`ensure_go_consumer` runs the same script when the binary is missing or older than its
source: with a warm Go module cache that needs no network, and on a fresh machine it is the one
fetch, from the Go module proxy at the versions go.sum pins.

``make setup`` fills the cache with ``python tests/support_consumers.py`` (idempotent: a second
run finds the marker and runs no Maven), so the tests need no network; ``python
tests/support_consumers.py go`` builds the Go consumer and prints its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from support_runtime import REPO, shared_cache

from faceflow import schema, topics
from faceflow.errors import PrerequisiteError, RuntimeStartError
from faceflow.kafka import admin
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import HeaderList, TraceParent, message_headers
from faceflow.runtime import kafka_broker
from faceflow.v1 import face_event_pb2

FACE_EVENT = "faceflow.v1.FaceEvent"
U64_MAX = 2**64 - 1
#: A valid command line of either consumer up to the mode (``--json`` or a descriptor set).
BASE_ARGS = ["--bootstrap", "b:1", "--topic", "t", "--count", "1"]
#: Command lines both consumers refuse (exit 2), and what each says.
BAD_ARGUMENTS = [
    (["--topic", "t", "--count", "1", "--json"], "--bootstrap is missing"),
    ([*BASE_ARGS[:-1], "0", "--json"], "--count: expected a positive integer, got '0'"),
    (BASE_ARGS, "expected either --descriptor-set and --message, or --json"),
    ([*BASE_ARGS, "--json", "--message", "M"], "expected either --descriptor-set and --message, or --json"),
    ([*BASE_ARGS, "--message", "M"], "--descriptor-set and --message go together"),
    ([*BASE_ARGS, "--json", "--verbose"], "unknown argument '--verbose'"),
]

JAVA_DIR = REPO / "tests" / "consumers" / "java"
POM = JAVA_DIR / "pom.xml"
JAVA_SOURCE = JAVA_DIR / "FacesConsumer.java"

GO_SOURCE = REPO / "tests" / "consumers" / "go"
GO_BUILD = GO_SOURCE / "build.sh"
GO_BINARY = REPO / ".cache" / "bin" / "faces-consumer-go"
#: A cold build (module download and compile) took about a minute on two cores.
GO_BUILD_TIMEOUT_S = 900
#: What build.sh says when there is no Go on PATH (its exit status is 1 then, as for a failed build).
NO_GO = "Go is needed to build tests/consumers/go"

FaceRecords = list[tuple[face_event_pb2.FaceEvent, HeaderList]]


# -- what the tests of both consumers share ---------------------------------------------------------


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, HeaderList]], *, client_id: str
) -> None:
    """``records`` (key, value, headers) into ``topic``, created as a faces topic if need be."""
    admin.ensure_topics(bootstrap, [topics.FACES.renamed(topic)])
    # The services' producer settings (lz4-compressed batches, idempotent): the consumer must read them.
    producer = make_producer(bootstrap, client_id=client_id)
    for key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)
    producer.close()


def faces_records(events: list[face_event_pb2.FaceEvent]) -> FaceRecords:
    """Each event with the headers faceflow's producers put on a faces record (a trace of its own)."""
    return [(e, message_headers(FACE_EVENT, TraceParent.new())) for e in events]


def expected_json(event: face_event_pb2.FaceEvent) -> Any:
    """What Python's ``json_format`` makes of ``event``, parsed (what each consumer must print)."""
    return json.loads(json_format.MessageToJson(event, always_print_fields_with_no_presence=True))


def descriptor_set(tmp_path: Path) -> str:
    """The FileDescriptorSet ``faceflow schema`` publishes, written under ``tmp_path``."""
    schema.write(tmp_path / "schema")
    return str(tmp_path / "schema" / schema.DESCRIPTOR_SET_NAME)


def printed_lines(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON lines a consumer printed; it must have exited 0."""
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def by_seq(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Lines keyed by the event's seq (records of a topic with several partitions come in any order)."""
    return {line["value"]["seq"]: line for line in lines}


def assert_each_record_read(
    lines: list[dict[str, Any]], sent: FaceRecords, value: Callable[[face_event_pb2.FaceEvent], Any]
) -> dict[str, dict[str, Any]]:
    """One line per sent record, with its key, its headers and ``value(event)``; lines by seq."""
    got = by_seq(lines)
    assert len(lines) == len(sent) == len(got)
    for event, headers in sent:
        line = got[str(event.seq)]
        assert line["value"] == value(event)
        assert line["key"] == event.stream_id
        assert line["headers"] == {name: v.decode() for name, v in headers}
    return got


def assert_consumer_reads(
    consumer: Callable[[Sequence[str]], subprocess.CompletedProcess[str]],
    bootstrap: str,
    topic: str,
    sent: FaceRecords,
    *,
    encode: Callable[[face_event_pb2.FaceEvent], bytes],
    mode: Sequence[str],
    expected: Callable[[face_event_pb2.FaceEvent], Any],
    client_id: str,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Produce each of ``sent`` as ``encode(event)`` under its stream id, have ``consumer`` read them
    back in ``mode`` (``--json``, or a descriptor set and message), and check one line per record
    (:func:`assert_each_record_read`); its stdout, and its lines by seq."""
    records = [(event.stream_id.encode(), encode(event), headers) for event, headers in sent]
    produce(bootstrap, topic, records, client_id=client_id)
    out = consumer(["--bootstrap", bootstrap, "--topic", topic, "--count", str(len(sent)), *mode])
    return out.stdout, assert_each_record_read(printed_lines(out), sent, expected)


def assert_one_error_line(out: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    """The consumer exited ``code`` with nothing on stdout and one line on stderr that ``says`` it."""
    assert (out.returncode, out.stdout, out.stderr.count("\n")) == (code, "", 1), out.stderr
    assert says in out.stderr


def assert_too_few_records_time_out(
    consumer: Callable[[Sequence[str]], subprocess.CompletedProcess[str]], bootstrap: str, topic: str
) -> None:
    """Asked for one record of the empty ``topic`` within 3 s, ``consumer`` says so and exits 1."""
    admin.ensure_topics(bootstrap, [topics.FACES.renamed(topic)])
    out = consumer(["--json", "--bootstrap", bootstrap, "--topic", topic, "--count", "1", "--timeout-s", "3"])
    assert_one_error_line(out, 1, f"timed out after 3 s with 0 of 1 records from {topic}")


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a consumer; its output as text (UTF-8, as both programs write it)."""
    return subprocess.run(
        list(argv), capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False
    )


# -- Java -------------------------------------------------------------------------------------------


def consumer_jars_dir(cache: Path) -> Path:
    return cache / "java-consumer" / "libs"


def _pom_digest() -> str:
    """What the fetched jars were made from: the pom and the Kafka version passed to it."""
    return hashlib.sha256(
        POM.read_bytes() + f"\nkafka.version={kafka_broker.KAFKA_VERSION}".encode()
    ).hexdigest()


def ensure_consumer_jars(cache: Path) -> Path:
    """Fetch the consumer's own jars with Maven into ``cache`` unless already there (idempotent)."""
    libs = consumer_jars_dir(cache)
    root = libs.parent
    marker = root / "complete.sha256"
    digest = _pom_digest()
    if marker.exists() and marker.read_text().strip() == digest and any(libs.glob("protobuf-java-*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError(
            "Maven (`mvn`) is needed once, to fetch the Java consumer's jars (protobuf-java, "
            "connect-json) from Maven Central, and it is not on PATH. Install it (Debian: apt-get "
            "install maven), or run `make setup`."
        )
    root.mkdir(parents=True, exist_ok=True)
    kafka_broker.copy_dependencies(
        mvn,
        POM,
        libs,
        cache=cache,
        what="the Java consumer's jars",
        properties={"kafka.version": kafka_broker.KAFKA_VERSION},
    )
    marker.write_text(digest + "\n")
    return libs


def java_classpath(cache: Path) -> str:
    """The consumer's jars first, then the broker's (kafka-clients and what it needs)."""
    broker = kafka_broker.ensure_jars(cache)
    return os.pathsep.join([f"{ensure_consumer_jars(cache)}/*", f"{broker.libs}/*"])


def run_java_consumer(
    args: Sequence[str], *, cache: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``java -cp ... FacesConsumer.java ARGS`` (the JDK's source launcher)."""
    cache = cache or shared_cache()
    java = kafka_broker.find_java()
    return _run([str(java), "-cp", java_classpath(cache), str(JAVA_SOURCE), *args], timeout)


# -- Go ---------------------------------------------------------------------------------------------


def _go_inputs() -> list[Path]:
    return [GO_SOURCE / "go.mod", GO_SOURCE / "go.sum", GO_SOURCE / "main.go"]


def is_go_consumer_up_to_date(binary: Path = GO_BINARY) -> bool:
    """The same test build.sh makes: the binary exists and is newer than each of its inputs."""
    if not binary.exists():
        return False
    built = binary.stat().st_mtime
    return all(p.stat().st_mtime < built for p in _go_inputs())


def ensure_go_consumer(binary: Path = GO_BINARY) -> Path:
    """The built consumer; runs build.sh first when it is missing or stale (idempotent)."""
    if is_go_consumer_up_to_date(binary):
        return binary
    result = subprocess.run(
        ["bash", str(GO_BUILD), str(binary)],
        capture_output=True,
        text=True,
        check=False,
        timeout=GO_BUILD_TIMEOUT_S,
    )
    if result.returncode != 0:
        last = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        if NO_GO in result.stderr:
            raise PrerequisiteError(
                f"Go (`go`) is needed once, to build the Go consumer {binary}, and it is not on PATH: "
                "install Go (see the README's prerequisites), or run `make tools`."
            )
        raise RuntimeStartError(f"{GO_BUILD} could not build {binary} (exit {result.returncode}):\n{last}")
    if not is_go_consumer_up_to_date(binary):
        raise RuntimeStartError(f"{GO_BUILD} exited 0 but {binary} is still missing or older than its source")
    return binary


def run_go_consumer(args: Sequence[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``faces-consumer-go ARGS``."""
    return _run([str(ensure_go_consumer()), *args], timeout)


# -- python tests/support_consumers.py [go] ---------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch the Java consumer's jars into the shared cache (``go``: build the Go consumer instead)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["go"]):
        print(f"usage: python tests/support_consumers.py [go]; got {' '.join(args)!r}", file=sys.stderr)
        return 2
    try:
        if args:
            print(f"Go consumer: {ensure_go_consumer()}")
        else:
            print(f"Java consumer classpath: {java_classpath(shared_cache())}")
    except (PrerequisiteError, RuntimeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

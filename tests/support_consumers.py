"""Consumers of faceflow's topics that are not Python: the Java consumer's jars, classpath and run.

``tests/consumers/java/FacesConsumer.java`` runs with the JDK's source launcher, no build step. Its
jars come in two halves: protobuf-java, protobuf-java-util and Kafka Connect's connect-json are
fetched by Maven from ``tests/consumers/java/pom.xml`` into ``<cache>/java-consumer/libs``, the way
the local runtime fetches the broker's (:func:`faceflow.runtime.kafka_broker.ensure_jars`: same
Maven call, same local repository ``<cache>/m2``); kafka-clients and its dependencies are the
broker's jars, already fetched, so both sides speak the same Kafka version.

``make setup`` fills the cache with ``python tests/support_consumers.py`` (idempotent: a second
run finds the marker and runs no Maven), so the tests need no network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from support_runtime import REPO, shared_cache

from faceflow.errors import PrerequisiteError, RuntimeStartError
from faceflow.runtime import kafka_broker

JAVA_DIR = REPO / "tests" / "consumers" / "java"
POM = JAVA_DIR / "pom.xml"
SOURCE = JAVA_DIR / "FacesConsumer.java"
#: Maven's first fetch can be slow; the broker's helper allows the same.
FETCH_TIMEOUT_S = 1800


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
    staging = root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-B",
        "-ntp",
        "-f",
        str(POM),
        f"-Dmaven.repo.local={cache / 'm2'}",
        f"-Dkafka.version={kafka_broker.KAFKA_VERSION}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=FETCH_TIMEOUT_S)
    if result.returncode != 0:
        last = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise RuntimeStartError(
            f"Maven could not fetch the Java consumer's jars (exit {result.returncode}):\n{last}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(digest + "\n")
    return libs


def java_classpath(cache: Path) -> str:
    """The consumer's jars first, then the broker's (kafka-clients and what it needs)."""
    broker = kafka_broker.ensure_jars(cache)
    return os.pathsep.join([f"{ensure_consumer_jars(cache)}/*", f"{broker.libs}/*"])


def run_java_consumer(
    args: Sequence[str], *, cache: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``java -cp ... FacesConsumer.java ARGS`` (the JDK's source launcher); output as text."""
    cache = cache or shared_cache()
    java = kafka_broker.find_java()
    argv = [str(java), "-cp", java_classpath(cache), str(SOURCE), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def main() -> int:
    """``python tests/support_consumers.py``: fetch the Java consumer's jars into the shared cache."""
    cache = shared_cache()
    try:
        print(f"Java consumer classpath: {java_classpath(cache)}")
    except (PrerequisiteError, RuntimeStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

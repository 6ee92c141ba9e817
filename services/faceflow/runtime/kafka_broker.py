"""A real Apache Kafka 4.x broker for the local runtime, started from the broker's Maven jars.

One node in KRaft combined mode (broker + controller) on the loopback interface. The jars are
fetched once by Maven into the cache folder (``<cache>/kafka-<version>/libs``, never committed);
the storage is formatted on the first start and kept between restarts, so topics and committed
offsets survive ``faceflow dev down`` / ``up``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from faceflow.errors import PrerequisiteError, RuntimeStartError
from faceflow.files import atomic_write
from faceflow.runtime import procs
from faceflow.runtime.settings import DevSettings

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
MIN_JAVA = 17
START_TIMEOUT_S = 90.0
#: Maven's first fetch (a cold local repository) can be slow.
MAVEN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class KafkaInstall:
    libs: Path
    log4j_config: Path
    java: Path


def find_java() -> Path:
    """The ``java`` to run the broker with (``$JAVA_HOME/bin/java`` first), checked to be 17+."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if java is None:
        raise PrerequisiteError(
            f"Java {MIN_JAVA}+ is needed to run the local Kafka broker, and no `java` was found on PATH "
            f"(JAVA_HOME={java_home or 'unset'}). "
            "Install it (Debian: apt-get install openjdk-17-jre-headless) "
            "or point FACEFLOW_KAFKA_BOOTSTRAP at an existing broker."
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrerequisiteError(f"`{java} -version` failed: {exc}") from exc
    major = parse_java_major(out.stderr + out.stdout)
    if major is None:
        raise PrerequisiteError(f"could not read the Java version from `{java} -version`:\n{out.stderr}")
    if major < MIN_JAVA:
        raise PrerequisiteError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer; {java} is Java {major}. "
            "Install a newer JDK and put it first on PATH or set JAVA_HOME."
        )
    return Path(java)


def parse_java_major(version_output: str) -> int | None:
    """Major version from ``java -version`` output: '1.8.0_392' -> 8, '17.0.15' -> 17, '21' -> 21."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def ensure_jars(cache: Path, *, say: Callable[[str], None] = lambda _msg: None) -> KafkaInstall:
    """Fetch the broker's jars with Maven into ``cache`` unless already there (idempotent)."""
    java = find_java()
    pom = resources.files("faceflow.runtime") / "kafka" / "pom.xml"
    log4j = resources.files("faceflow.runtime") / "kafka" / "log4j2.properties"
    pom_bytes = pom.read_bytes()
    root = cache / f"kafka-{KAFKA_VERSION}"
    libs = root / "libs"
    marker = root / "complete.sha256"
    digest = hashlib.sha256(pom_bytes).hexdigest()
    root.mkdir(parents=True, exist_ok=True)
    log4j_path = root / "log4j2.properties"
    log4j_bytes = log4j.read_bytes()
    if not log4j_path.is_file() or log4j_path.read_bytes() != log4j_bytes:
        # only when it differs: the cache is shared by every home, and a rewrite would race a
        # broker of another home that reads it at start
        atomic_write(log4j_path, lambda tmp: tmp.write_bytes(log4j_bytes))
    if marker.exists() and marker.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar")):
        return KafkaInstall(libs=libs, log4j_config=log4j_path, java=java)

    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError(
            "Maven (`mvn`) is needed once, to fetch the Kafka broker's jars from Maven Central, and it is "
            "not on PATH. Install it (Debian: apt-get install maven) or point FACEFLOW_KAFKA_BOOTSTRAP at "
            "an existing broker."
        )
    pom_path = root / "pom.xml"
    pom_path.write_bytes(pom_bytes)
    say(f"  fetching Apache Kafka {KAFKA_VERSION} broker jars with Maven into {libs} (first run only)")
    copy_dependencies(mvn, pom_path, libs, cache=cache, what="the Kafka broker jars")
    marker.write_text(digest + "\n")
    jars = list(libs.glob("*.jar"))
    size_mb = sum(j.stat().st_size for j in jars) / 1e6
    say(f"  fetched {len(jars)} jars ({size_mb:.0f} MB)")
    return KafkaInstall(libs=libs, log4j_config=log4j_path, java=java)


def copy_dependencies(
    mvn: str,
    pom: Path,
    libs: Path,
    *,
    cache: Path,
    what: str,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Fetch the runtime dependencies of ``pom`` with Maven into the folder ``libs``, replacing it.

    Maven writes into ``<libs>.partial`` first, renamed to ``libs`` only once it succeeded, so an
    interrupted fetch never leaves a folder that looks complete. The local repository is
    ``<cache>/m2``, shared by every pom fetched this way; ``properties`` become ``-Dkey=value``.

    Raises:
        RuntimeStartError: Maven failed (the last lines of its output, and ``what`` it fetched).
    """
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-B",
        "-ntp",
        "-f",
        str(pom),
        f"-Dmaven.repo.local={cache / 'm2'}",
        *(f"-D{key}={value}" for key, value in (properties or {}).items()),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=MAVEN_TIMEOUT_S)
    if result.returncode != 0:
        last = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise RuntimeStartError(f"Maven could not fetch {what} (exit {result.returncode}):\n{last}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)


def broker_properties(settings: DevSettings, data_dir: Path) -> str:
    """server.properties for one combined broker+controller node on ``settings.host``."""
    host = settings.host
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Topics set their own max.message.bytes (faceflow.topics); this is the broker-wide ceiling
        # for topics created by others.
        "message.max.bytes": str(8 * 1024 * 1024 + 1024 * 1024),
        "replica.fetch.max.bytes": str(16 * 1024 * 1024),
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": "60000",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


#: SASL mechanisms :class:`SaslListener` can enable (the ones faceflow's clients speak).
SASL_LISTENER_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, kw_only=True)
class SaslListener:
    """A SASL listener that replaces the broker's PLAINTEXT client listener (opt-in; the local
    runtime's default stays PLAINTEXT).

    ``users`` maps user names to passwords; each enabled mechanism accepts all of them (SCRAM
    credentials are written when the storage is formatted, so they apply to a fresh data folder
    only). ``inter_broker_user`` is the broker's own user, one of ``users``, spoken with the first
    mechanism. With ``keystore`` (one PEM file: an unencrypted PKCS#8 private key and its
    certificate chain) and ``truststore`` (the PEM CA that signed it: the broker checks at start
    that a client of its own can connect) the listener is ``SASL_SSL``, else ``SASL_PLAINTEXT``.
    The passwords land in the broker's server.properties in the runtime folder, as JAAS options.
    """

    users: Mapping[str, str]
    mechanisms: tuple[str, ...] = ("PLAIN",)
    inter_broker_user: str = "admin"
    keystore: Path | None = None
    truststore: Path | None = None

    def __post_init__(self) -> None:
        if not self.mechanisms or any(m not in SASL_LISTENER_MECHANISMS for m in self.mechanisms):
            raise ValueError(
                f"mechanisms: expected some of {', '.join(SASL_LISTENER_MECHANISMS)}, got {self.mechanisms!r}"
            )
        if self.inter_broker_user not in self.users:
            raise ValueError(
                f"inter_broker_user: expected one of the users {sorted(self.users)}, "
                f"got {self.inter_broker_user!r}"
            )
        if (self.keystore is None) != (self.truststore is None):
            raise ValueError("keystore, truststore: expected both (SASL_SSL) or neither (SASL_PLAINTEXT)")
        for name, password in self.users.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or not re.fullmatch(r"[A-Za-z0-9._-]+", password):
                raise ValueError(
                    "users: expected names and passwords of letters, digits, '.', '_' and '-', "
                    f"got user {name!r} (or its password)"
                )

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.keystore is not None else "SASL_PLAINTEXT"


def sasl_broker_properties(settings: DevSettings, data_dir: Path, listener: SaslListener) -> str:
    """server.properties as :func:`broker_properties`, with ``listener`` as the client listener."""
    props = dict(line.split("=", 1) for line in broker_properties(settings, data_dir).splitlines())
    host, name = settings.host, listener.protocol
    prefix = f"listener.name.{name.lower()}"
    props |= {
        "listeners": f"{name}://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.controller_port}",
        "advertised.listeners": f"{name}://{host}:{settings.kafka_port}",
        "inter.broker.listener.name": name,
        "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": ",".join(listener.mechanisms),
        "sasl.mechanism.inter.broker.protocol": listener.mechanisms[0],
    }
    admin, admin_password = listener.inter_broker_user, listener.users[listener.inter_broker_user]
    for mechanism in listener.mechanisms:
        if mechanism == "PLAIN":
            accepted = " ".join(f'user_{user}="{password}"' for user, password in listener.users.items())
            jaas = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{admin}" password="{admin_password}" {accepted};'
            )
        else:
            jaas = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{admin}" password="{admin_password}";'
            )
        props[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = jaas
    if listener.keystore is not None:
        props[f"{prefix}.ssl.keystore.type"] = "PEM"
        props[f"{prefix}.ssl.keystore.location"] = str(listener.keystore)
        props[f"{prefix}.ssl.truststore.type"] = "PEM"
        props[f"{prefix}.ssl.truststore.location"] = str(listener.truststore)
        props[f"{prefix}.ssl.client.auth"] = "none"
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _scram_arguments(listener: SaslListener | None) -> list[str]:
    """``StorageTool format`` arguments that create the SCRAM credentials of ``listener``'s users."""
    if listener is None:
        return []
    args: list[str] = []
    for mechanism in listener.mechanisms:
        if mechanism.startswith("SCRAM-"):
            for user, password in listener.users.items():
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
    return args


def start(
    settings: DevSettings, install: KafkaInstall, *, sasl: SaslListener | None = None
) -> procs.ProcessRecord:
    """Format storage on first start, then launch the broker detached. Returns at once.

    ``sasl``: serve clients on that SASL listener instead of PLAINTEXT (default: PLAINTEXT).
    """
    base = settings.run_dir / "kafka"
    data_dir = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    properties = (
        broker_properties(settings, data_dir)
        if sasl is None
        else sasl_broker_properties(settings, data_dir, sasl)
    )
    if sasl is not None:  # the file holds the listener's passwords: owner only, before they are written
        props.touch(mode=0o600, exist_ok=True)
        props.chmod(0o600)
    props.write_text(properties)
    procs.require_free_ports(
        "the Kafka broker",
        settings.host,
        {"client port": settings.kafka_port, "controller port": settings.controller_port},
        "Set FACEFLOW_DEV_KAFKA_PORT / FACEFLOW_DEV_CONTROLLER_PORT to free ports, or point "
        "FACEFLOW_KAFKA_BOOTSTRAP at the broker that is already running.",
    )
    classpath = f"{install.libs}/*"
    if not (data_dir / "meta.properties").exists():
        cluster_id = _cluster_id(base)
        logger.info("formatting Kafka storage in %s (cluster %s)", data_dir, cluster_id)
        fmt = subprocess.run(
            [
                str(install.java),
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                f"--cluster-id={cluster_id}",
                "-c",
                str(props),
                *_scram_arguments(sasl),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise RuntimeStartError(
                f"formatting Kafka storage in {data_dir} failed (exit {fmt.returncode}):\n"
                + "\n".join((fmt.stdout + fmt.stderr).splitlines()[-20:])
            )
    argv = [
        str(install.java),
        f"-Xms{settings.kafka_heap}",
        f"-Xmx{settings.kafka_heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={install.log4j_config}",
        f"-Dkafka.logs.dir={base}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(props),
    ]
    return procs.spawn("kafka", argv, log=base / "broker.log")


def _cluster_id(base: Path) -> str:
    """A stable KRaft cluster id for this runtime folder (22-char URL-safe base64 of a UUID).

    Never one that starts with ``-`` (one in 64 would): the storage tool would read it as an
    option, as Kafka's own ``Uuid.randomUuid`` avoids for the same reason.
    """
    path = base / "cluster.id"
    if path.exists():
        stored = path.read_text().strip()
        if stored and not stored.startswith("-"):
            return stored
    cid = "-"
    while cid.startswith("-"):
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    path.write_text(cid + "\n")
    return cid

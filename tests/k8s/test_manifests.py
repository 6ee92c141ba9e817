"""The Kubernetes manifests (k8s/): rendered by kustomize, then checked for what the design requires.

``k8s/check.sh`` (slow: schemas + linter) is run as a whole; everything else reads the YAML that
``k8s/check.sh --render-only`` renders for every overlay and asserts structure directly: resources
and security on every container, shutdown grace, native probes, topics equal to topics.py, KEDA on
the right group and topic, and NetworkPolicies that allow exactly the flows docs/kubernetes.md
documents.
"""

from __future__ import annotations

import copy
import json
import re
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from faceflow.models.contract import FACE_PIPELINE_INPUTS, FACE_PIPELINE_OUTPUTS
from faceflow.topics import ALL_TOPICS, FRAMES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
RENDERED = ROOT / ".cache" / "k8s" / "rendered"
BIN = ROOT / ".cache" / "bin"
OVERLAYS = ("dev", "prod", "prod-canary")
PROD_LIKE = ("prod", "prod-canary")
SERVICES = {  # component -> (env prefix, gRPC port, metrics port)
    "ingest": ("FACEFLOW_INGEST_", 50051, 9464),
    "analyzer": ("FACEFLOW_ANALYZER_", 50052, 9465),
    "aggregator": ("FACEFLOW_AGGREGATOR_", 50053, 9466),
}
COMPONENTS = ("ingest", "analyzer", "aggregator", "triton", "models")
TLS_SERVICES = ("ingest", "aggregator")  # the client-facing APIs (k8s/components/grpc-tls, prod)
Doc = dict[str, Any]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(K8S / "check.sh"), *args], capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    result = run_check("--render-only")
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        name: [d for d in yaml.safe_load_all((RENDERED / f"{name}.yaml").read_text()) if d]
        for name in OVERLAYS
    }


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    yield from (d for d in docs if d["kind"] in ("Deployment", "Job"))


def containers(pod: Mapping[str, Any]) -> Iterator[Doc]:
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def container_env(docs: list[Doc], container: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        env.update(named(docs, "ConfigMap", ref).get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    return env


def service_container(docs: list[Doc], component: str) -> tuple[Doc, Doc]:
    deployment = named(docs, "Deployment", f"faceflow-{component}")
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


# -- the whole check (schemas + linter) ------------------------------------------------------------


@pytest.fixture(scope="module")
def checked() -> subprocess.CompletedProcess[str]:
    """One full run of k8s/check.sh (it also installs kubeconform, kube-score and the schemas)."""
    return run_check()


@pytest.mark.slow
def test_check_sh_passes(checked: subprocess.CompletedProcess[str]) -> None:
    result = checked
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    for overlay in OVERLAYS:
        assert f"==> kube-score v1.20.0: {overlay}\n  clean" in out
    assert out.count("Invalid: 0, Errors: 0, Skipped: 0") == 2 * len(OVERLAYS)
    assert "all checks passed" in out


def kubeconform(path: Path) -> subprocess.CompletedProcess[str]:
    cache = ROOT / ".cache" / "k8s" / "kubernetes-json-schema"
    return subprocess.run(
        [
            str(BIN / "kubeconform"),
            "-strict",
            "-kubernetes-version",
            "1.33.0",
            "-schema-location",
            f"{cache}/{{{{ .NormalizedKubernetesVersion }}}}-local{{{{ .StrictSuffix }}}}/"
            "{{ .ResourceKind }}{{ .KindSuffix }}.json",
            "-schema-location",
            f"{K8S}/schemas/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "name", "mutate", "error"),
    [
        (
            "KafkaTopic",
            "faceflow.frames.v1",
            lambda d: d["spec"].update(partitons=6),
            "'partitons' not allowed",
        ),
        ("Kafka", "faceflow", lambda d: d["spec"]["kafka"]["listeners"][0].update(tls="yes"), "want boolean"),
        ("ScaledObject", "faceflow-analyzer", lambda d: d["spec"].update(maxReplicas=6), "'maxReplicas'"),
        (
            "Deployment",
            "faceflow-ingest",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolcy="Always"),
            "'imagePullPolcy' not allowed",
        ),
    ],
)
def test_schema_validation_catches_mistakes(
    rendered: dict[str, list[Doc]],
    checked: subprocess.CompletedProcess[str],
    tmp_path: Path,
    kind: str,
    name: str,
    mutate: Any,
    error: str,
) -> None:
    assert checked.returncode == 0  # tools and schemas in place
    doc = copy.deepcopy(named(rendered["prod"], kind, name))
    mutate(doc)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = kubeconform(path)
    assert result.returncode == 1, result.stdout
    assert error in result.stdout


@pytest.mark.slow
def test_kube_score_catches_a_missing_security_context(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    assert run_check().returncode == 0
    docs = copy.deepcopy(rendered["prod"])
    _, container = service_container(docs, "aggregator")
    del container["securityContext"]
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = subprocess.run(
        [str(BIN / "kube-score"), "score", "--output-format", "ci", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "[CRITICAL] faceflow-aggregator/faceflow apps/v1/Deployment: (aggregator)" in result.stdout


# -- generated files --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["gen_topics.py", "gen_canary.py"])
def test_generated_files_are_current(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(K8S / "scripts" / script), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stale_topics_are_detected(tmp_path: Path) -> None:
    stale = tmp_path / "topics.yaml"
    stale.write_text(
        (K8S / "base" / "kafka" / "topics.yaml").read_text().replace("partitions: 6", "partitions: 3")
    )
    result = subprocess.run(
        [sys.executable, str(K8S / "scripts" / "gen_topics.py"), "--check", "--out", str(stale)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "-  partitions: 3" in result.stdout and "+  partitions: 6" in result.stdout


# -- Kafka ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_equal_topics_py(rendered: dict[str, list[Doc]], overlay: str) -> None:
    topics = {t["spec"]["topicName"]: t for t in of_kind(rendered[overlay], "KafkaTopic")}
    assert sorted(topics) == sorted(spec.name for spec in ALL_TOPICS)
    replicas = 1 if overlay == "dev" else 3
    for spec in ALL_TOPICS:
        rendered_spec = topics[spec.name]["spec"]
        assert rendered_spec["partitions"] == spec.partitions, spec.name
        assert rendered_spec["config"] == dict(spec.configs), spec.name
        assert rendered_spec["replicas"] == replicas, spec.name
        assert topics[spec.name]["metadata"]["labels"]["strimzi.io/cluster"] == "faceflow"


@pytest.mark.parametrize(
    ("overlay", "nodes", "rf", "isr"), [("dev", 1, 1, 1), ("prod", 3, 3, 2), ("prod-canary", 3, 3, 2)]
)
def test_kafka_durability(
    rendered: dict[str, list[Doc]], overlay: str, nodes: int, rf: int, isr: int
) -> None:
    kafka = named(rendered[overlay], "Kafka", "faceflow")["spec"]["kafka"]
    pool = named(rendered[overlay], "KafkaNodePool", "dual")["spec"]
    assert pool["replicas"] == nodes
    assert set(pool["roles"]) == {"controller", "broker"}
    config = kafka["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (rf, isr)
    assert config["offsets.topic.replication.factor"] == rf
    assert config["auto.create.topics.enable"] is False
    assert isr < rf or rf == 1  # one broker down still accepts acks=all writes (prod)
    for topic in of_kind(rendered[overlay], "KafkaTopic"):
        assert int(topic["spec"]["config"].get("min.insync.replicas", isr)) <= topic["spec"]["replicas"]
    listener = kafka["listeners"][0]
    assert (listener["port"], listener["tls"], listener["authentication"]["type"]) == (
        9093,
        True,
        "scram-sha-512",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_users_match_the_services(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    users = {u["metadata"]["name"]: u for u in of_kind(docs, "KafkaUser")}
    topic_names = {spec.name for spec in ALL_TOPICS}
    for user in users.values():
        for acl in user["spec"]["authorization"]["acls"]:
            if acl["resource"]["type"] == "topic":
                assert acl["resource"]["name"] in topic_names
    for component in SERVICES:
        deployment, container = service_container(docs, component)
        env = container_env(docs, container)
        username = env["FACEFLOW_KAFKA_SASL_USERNAME"]
        assert username in users
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["kafka-user"]["secret"]["secretName"] == username
        assert volumes["kafka-ca"]["secret"]["secretName"] == "faceflow-cluster-ca-cert"
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["FACEFLOW_KAFKA_SASL_PASSWORD_FILE"] == f"{mounts['kafka-user']}/password"
        assert env["FACEFLOW_KAFKA_SSL_CAFILE"] == f"{mounts['kafka-ca']}/ca.crt"
        assert (env["FACEFLOW_KAFKA_SECURITY_PROTOCOL"], env["FACEFLOW_KAFKA_SASL_MECHANISM"]) == (
            "SASL_SSL",
            "SCRAM-SHA-512",
        )
        assert env["FACEFLOW_KAFKA_BOOTSTRAP"] == "faceflow-kafka-bootstrap:9093"
    analyzer_acls = {
        (a["resource"]["type"], a["resource"]["name"])
        for a in users["faceflow-analyzer"]["spec"]["authorization"]["acls"]
    }
    _, analyzer = service_container(docs, "analyzer")
    assert ("group", container_env(docs, analyzer)["FACEFLOW_ANALYZER_GROUP_ID"]) in analyzer_acls


# -- containers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_a_locked_down_context(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    seen = 0
    for workload in workloads(rendered[overlay]):
        where = f"{overlay} {workload['kind']} {workload['metadata']['name']}"
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] >= 10000, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(pod):
            seen += 1
            what = f"{where} container {container['name']}"
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory", "ephemeral-storage"}, what
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, what
            assert ctx["readOnlyRootFilesystem"] is True, what
            assert ctx["runAsNonRoot"] is True, what
            assert ctx["capabilities"] == {"drop": ["ALL"]}, what
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, what
            assert ":" in container["image"] and not container["image"].endswith(":latest"), what
            if container in pod["containers"]:  # the long-running ones write to /tmp
                tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
                assert tmp and "emptyDir" in volumes[tmp[0]["name"]], what
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, what
    assert seen >= 6  # 4 Deployments (Triton: + its init container) and the Job


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_accounts_mount_no_token(rendered: dict[str, list[Doc]], overlay: str) -> None:
    accounts = {a["metadata"]["name"]: a for a in of_kind(rendered[overlay], "ServiceAccount")}
    for account in accounts.values():
        assert account["automountServiceAccountToken"] is False
    for workload in workloads(rendered[overlay]):
        assert workload["spec"]["template"]["spec"]["serviceAccountName"] in accounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images(rendered: dict[str, list[Doc]], overlay: str) -> None:
    expected = {
        "faceflow-ingest": "faceflow",
        "faceflow-analyzer": "faceflow",
        "faceflow-aggregator": "faceflow",
    }
    expected |= {"faceflow-triton": "faceflow-triton", "faceflow-models": "faceflow-models"}
    for workload in workloads(rendered[overlay]):
        name = workload["metadata"]["name"].removesuffix("-canary")
        for container in containers(workload["spec"]["template"]["spec"]):
            repository = container["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
            assert repository == expected[name], (workload["metadata"]["name"], container["image"])
            if overlay != "dev":
                assert container["image"].startswith("registry.example.com/faceflow/")
                assert container["imagePullPolicy"] == "Always"


# -- services: probes, shutdown, settings -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("component", list(SERVICES))
def test_service_probes_ports_and_grace(rendered: dict[str, list[Doc]], overlay: str, component: str) -> None:
    docs = rendered[overlay]
    prefix, grpc_port, metrics_port = SERVICES[component]
    deployment, container = service_container(docs, component)
    env = container_env(docs, container)
    assert container["args"] == [component]
    assert (env[f"{prefix}GRPC_HOST"], int(env[f"{prefix}GRPC_PORT"])) == ("0.0.0.0", grpc_port)
    assert (env[f"{prefix}METRICS_HOST"], int(env[f"{prefix}METRICS_PORT"])) == ("0.0.0.0", metrics_port)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port}
    # Native gRPC readiness on the health service, or (TLS on, prod) the same check over TLS in an
    # exec probe; liveness and startup: the process is listening.
    tls = overlay in PROD_LIKE and component in TLS_SERVICES
    if tls:
        assert container["readinessProbe"]["exec"]["command"] == [
            "python",
            "/etc/faceflow/grpc-probe/grpc_health_probe.py",
            "--port",
            str(grpc_port),
            "--server-name",
            f"faceflow-{component}",
        ]
        assert container["readinessProbe"]["timeoutSeconds"] > 3  # the script's own RPC deadline
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["FACEFLOW_TLS_CERT_FILE"] == f"{mounts['grpc-tls']}/tls.crt"
        assert env["FACEFLOW_TLS_KEY_FILE"] == f"{mounts['grpc-tls']}/tls.key"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["grpc-tls"]["secret"]["secretName"] == "faceflow-grpc-tls"
        probe_cm = named(docs, "ConfigMap", volumes["grpc-probe"]["configMap"]["name"])
        assert (
            probe_cm["data"]["grpc_health_probe.py"]
            == (K8S / "components" / "grpc-tls" / "grpc_health_probe.py").read_text()
        )
    else:
        assert container["readinessProbe"]["grpc"] == {"port": grpc_port}
        assert not [k for k in env if k.startswith("FACEFLOW_TLS_")]
    assert container["livenessProbe"]["tcpSocket"] == {"port": grpc_port}
    assert container["startupProbe"]["tcpSocket"] == {"port": grpc_port}
    # Shutdown: endpoints drain during preStop, then SIGTERM and the service's own grace.
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(env[f"{prefix}GRACE_S"])
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > sleep + grace
    # Settings of another service never leak in.
    others = [p for c, (p, _, _) in SERVICES.items() if c != component]
    assert not [k for k in env if k.startswith(tuple(others))]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert pod.get("enableServiceLinks") is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_settings(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    analyzer = container_env(docs, service_container(docs, "analyzer")[1])
    assert analyzer["FACEFLOW_TRITON_URL"] == "faceflow-triton:8001"
    assert analyzer["FACEFLOW_ANALYZER_GROUP_ID"] == "faceflow-analyzer"
    assert analyzer["FACEFLOW_ANALYZER_SCHEDULE"] in ("adaptive", "all")
    aggregator = container_env(docs, service_container(docs, "aggregator")[1])
    assert aggregator["FACEFLOW_AGGREGATOR_GROUP_ID"] == "faceflow-aggregator"
    assert aggregator["FACEFLOW_AGGREGATOR_PUBLISH_EMBEDDINGS"] == "false"  # privacy default
    assert aggregator["FACEFLOW_AGGREGATOR_CROSS_STREAM"] in ("true", "false")
    for component in ("ingest", "aggregator"):  # the client-facing APIs require the bearer token
        deployment, container = service_container(docs, component)
        env = container_env(docs, container)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["FACEFLOW_AUTH_TOKEN_FILE"] == f"{mounts['grpc-token']}/token"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["grpc-token"]["secret"]["secretName"] == "faceflow-grpc-token"


def test_no_secret_values_in_the_manifests(rendered: dict[str, list[Doc]]) -> None:
    for overlay, docs in rendered.items():
        assert not of_kind(docs, "Secret"), overlay
        for cm in of_kind(docs, "ConfigMap"):
            for key, value in cm.get("data", {}).items():
                if re.search(r"PASSWORD|TOKEN|SECRET", key) and value:
                    assert value.startswith("/var/run/secrets/"), (overlay, key, value)


# -- Triton and the model Job -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlay", "variant", "gpus"), [("dev", "cpu", 0), ("prod", "gpu", 1), ("prod-canary", "gpu", 1)]
)
def test_triton(rendered: dict[str, list[Doc]], overlay: str, variant: str, gpus: int) -> None:
    docs = rendered[overlay]
    triton = named(docs, "Deployment", "faceflow-triton")
    pod = triton["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = container_env(docs, container)
    assert env["FACEFLOW_MODEL_VARIANT"] == variant
    assert (
        "--model-repository=/models/builds/$(FACEFLOW_MODEL_BUILD)/triton_repo/$(FACEFLOW_MODEL_VARIANT)"
        in container["args"]
    )
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["/bin/sh", "/etc/faceflow/probe/probe.sh"]
        assert container[probe]["timeoutSeconds"] > 8  # probe.sh's curl gives up after 8 s
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 1200
    volumes = {v["name"]: v for v in pod["volumes"]}
    probe_cm = named(docs, "ConfigMap", volumes["probe"]["configMap"]["name"])
    assert set(probe_cm.get("data", {})) | set(probe_cm.get("binaryData", {})) == {
        "probe.sh",
        "face_pipeline.bin",
        "face_pipeline.header-length",
        "face_pipeline.expect",
    }
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "faceflow-models", "readOnly": True}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
    limits = container["resources"]["limits"]
    assert int(limits.get("nvidia.com/gpu", 0)) == gpus
    tolerations = pod.get("tolerations", [])
    assert bool(tolerations) == bool(gpus)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    exit_timeout = int(
        next(a for a in container["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1]
    )
    assert (
        pod["terminationGracePeriodSeconds"]
        > exit_timeout + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    )
    job = named(docs, "Job", "faceflow-models")
    job_env = container_env(docs, job["spec"]["template"]["spec"]["containers"][0])
    assert job_env["FACEFLOW_MODEL_VARIANT"] == variant
    assert job_env["FACEFLOW_MODEL_BUILD"] == env["FACEFLOW_MODEL_BUILD"]


def test_canary_serves_its_own_build(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["prod-canary"]
    stable = named(docs, "Deployment", "faceflow-triton")
    canary = named(docs, "Deployment", "faceflow-triton-canary")
    service = named(docs, "Service", "faceflow-triton")
    for deployment, track in ((stable, "stable"), (canary, "canary")):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["faceflow.io/track"] == track
        assert deployment["spec"]["selector"]["matchLabels"]["faceflow.io/track"] == track
        assert all(labels[k] == v for k, v in service["spec"]["selector"].items())  # both behind the Service
    build = container_env(docs, stable["spec"]["template"]["spec"]["containers"][0])["FACEFLOW_MODEL_BUILD"]
    canary_build = container_env(docs, canary["spec"]["template"]["spec"]["containers"][0])[
        "FACEFLOW_MODEL_BUILD"
    ]
    job_build = container_env(
        docs, named(docs, "Job", "faceflow-models-canary")["spec"]["template"]["spec"]["containers"][0]
    )
    assert canary_build != build
    assert job_build["FACEFLOW_MODEL_BUILD"] == canary_build


def test_probe_request_is_a_valid_binary_inference_request() -> None:
    folder = K8S / "base" / "triton" / "probe"
    body = (folder / "face_pipeline.bin").read_bytes()
    header_length = int((folder / "face_pipeline.header-length").read_text())
    header = json.loads(body[:header_length])
    (image_input,) = header["inputs"]
    assert image_input["name"] == FACE_PIPELINE_INPUTS[0].name == "IMAGES"
    assert (image_input["datatype"], image_input["shape"]) == ("BYTES", [1])
    tensor = body[header_length:]
    assert image_input["parameters"]["binary_data_size"] == len(tensor)
    (length,) = struct.unpack("<I", tensor[:4])
    assert length == len(tensor) - 4
    with Image.open(BytesIO(tensor[4:])) as img:
        assert (img.format, img.size) == ("JPEG", (64, 48))
    outputs = {o["name"] for o in header["outputs"]}
    assert outputs <= {t.name for t in FACE_PIPELINE_OUTPUTS}
    expect = (folder / "face_pipeline.expect").read_text()
    for name in outputs:
        assert f'"name":"{name}"' in expect


# -- scaling and availability (prod) ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", PROD_LIKE)
def test_keda_scales_the_analyzer_on_its_lag(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    scaled = named(docs, "ScaledObject", "faceflow-analyzer")["spec"]
    deployment, container = service_container(docs, "analyzer")
    env = container_env(docs, container)
    assert scaled["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "faceflow-analyzer",
    }
    assert "replicas" not in deployment["spec"]  # KEDA owns it
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["topic"] == FRAMES.name
    assert meta["consumerGroup"] == env["FACEFLOW_ANALYZER_GROUP_ID"]
    assert meta["bootstrapServers"] == env["FACEFLOW_KAFKA_BOOTSTRAP"]
    assert 2 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= FRAMES.partitions
    auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    (username,) = auth["env"]
    assert username["containerName"] == container["name"]
    assert username["name"] in env
    secrets = {s["parameter"]: s["name"] for s in auth["secretTargetRef"]}
    assert secrets == {"password": env["FACEFLOW_KAFKA_SASL_USERNAME"], "ca": "faceflow-cluster-ca-cert"}


@pytest.mark.parametrize("overlay", PROD_LIKE)
def test_prod_availability(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            p
            for p in pdbs
            if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
        ]
        assert len(covering) == 1, deployment["metadata"]["name"]
        if deployment["metadata"]["name"].endswith("-canary"):
            continue
        assert deployment["spec"].get("replicas", 2) >= 2
        pod = deployment["spec"]["template"]["spec"]
        anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert all(
            labels.get(k) == v for k, v in anti["podAffinityTerm"]["labelSelector"]["matchLabels"].items()
        )
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    pool = named(docs, "KafkaNodePool", "dual")["spec"]["template"]["pod"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in pool} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_restricted_pod_security(rendered: dict[str, list[Doc]], overlay: str) -> None:
    (namespace,) = of_kind(rendered[overlay], "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered[overlay] if d["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


# -- network policies -------------------------------------------------------------------------------

Flow = tuple[str, str, str]  # (from, to, "port/PROTO")


def documented_flows(overlay: str) -> set[Flow]:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    table = text.split("<!-- network-flows:begin -->")[1].split("<!-- network-flows:end -->")[0]
    flows: set[Flow] = set()
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        sources, targets, ports, overlays = cells[:4]
        if overlays != "all" and overlay not in [o.strip() for o in overlays.split(",")]:
            continue
        for src in sources.split(","):
            for dst in targets.split(","):
                for port in ports.split(","):
                    flows.add((src.strip(), dst.strip(), port.strip().strip("`")))
    assert flows, "docs/kubernetes.md has no network flow table"
    return flows


def selected_components(selector: Mapping[str, Any]) -> list[str]:
    labels = selector.get("matchLabels", {})
    assert not selector.get("matchExpressions")
    if not labels:
        return [*COMPONENTS, "kafka"]
    assert labels.get("app.kubernetes.io/part-of") == "faceflow", selector
    component = labels.get("app.kubernetes.io/component")
    return [component] if component else list(COMPONENTS)


def peer_name(peer: Mapping[str, Any]) -> str:
    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        if block["cidr"] == "192.0.2.0/24":
            return "cameras"
        if block["cidr"] == "0.0.0.0/0" and set(block["except"]) == {
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
        }:
            return "hub"
    elif (ns == {"faceflow.io/client": "true"} and not pods) or (
        not ns and pods == {"faceflow.io/client": "true"}
    ):
        return "clients"
    elif ns == {"kubernetes.io/metadata.name": "monitoring"} and pods == {
        "app.kubernetes.io/name": "prometheus"
    }:
        return "prometheus"
    elif ns == {"kubernetes.io/metadata.name": "kube-system"} and pods == {"k8s-app": "kube-dns"}:
        return "dns"
    elif ns == {"kubernetes.io/metadata.name": "keda"} and pods == {"app": "keda-operator"}:
        return "keda"
    elif not ns and pods == {"strimzi.io/cluster": "faceflow", "strimzi.io/kind": "Kafka"}:
        return "kafka"
    elif not ns and set(pods) == {"app.kubernetes.io/part-of", "app.kubernetes.io/component"}:
        return str(pods["app.kubernetes.io/component"])
    raise AssertionError(f"a peer the flow table does not know: {peer}")


def policy_flows(docs: list[Doc]) -> tuple[set[Flow], set[Flow]]:
    """(egress flows, ingress flows) the NetworkPolicies and Strimzi's listener peers allow."""
    egress: set[Flow] = set()
    ingress: set[Flow] = set()
    for policy in of_kind(docs, "NetworkPolicy"):
        spec = policy["spec"]
        selected = selected_components(spec["podSelector"])
        for rule in spec.get("egress", []):
            for peer in rule["to"]:
                for port in rule["ports"]:
                    egress |= {(s, peer_name(peer), f"{port['port']}/{port['protocol']}") for s in selected}
        for rule in spec.get("ingress", []):
            for peer in rule["from"]:
                for port in rule["ports"]:
                    ingress |= {(peer_name(peer), d, f"{port['port']}/{port['protocol']}") for d in selected}
    for listener in named(docs, "Kafka", "faceflow")["spec"]["kafka"]["listeners"]:
        for peer in listener["networkPolicyPeers"]:
            ingress.add((peer_name(peer), "kafka", f"{listener['port']}/TCP"))
    return egress, ingress


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_documented_flows(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    egress, ingress = policy_flows(docs)
    assert egress | ingress == documented_flows(overlay)
    inside = {*COMPONENTS, "kafka"}
    for flow in egress | ingress:  # a flow between two of our pods needs both ends open
        if flow[0] in inside and flow[1] in inside:
            assert flow in egress and flow in ingress, flow
    deny = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    assert deny["faceflow-default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert deny["faceflow-default-deny-egress"]["policyTypes"] == ["Egress"]
    assert "egress" not in deny["faceflow-default-deny-egress"]
    for workload in workloads(docs):  # every pod of ours is under the egress default deny
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "faceflow"
        assert labels["app.kubernetes.io/component"] in COMPONENTS

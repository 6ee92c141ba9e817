"""The manifests let replicas reach each other: each aggregator and ingest pod advertises its own IP
(the downward API) to its consumer group, and with TLS on (prod) a replica can verify the others,
reached by pod IP, as the Service name in the shared certificate (the aggregator forwards calls
for other replicas' streams; ingest's ListSources asks the other replicas)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from faceflow.service.peers import advertised_address

ROOT = Path(__file__).resolve().parents[2]
RENDERED = ROOT / ".cache" / "k8s" / "rendered"
OVERLAYS = ("dev", "prod", "prod-canary")


@pytest.fixture(scope="module")
def containers() -> dict[tuple[str, str], dict[str, Any]]:
    """The container of the aggregator and of ingest, by (overlay, deployment), as rendered."""
    result = subprocess.run(
        ["bash", str(ROOT / "k8s" / "check.sh"), "--render-only"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = {}
    for overlay in OVERLAYS:
        docs = [d for d in yaml.safe_load_all((RENDERED / f"{overlay}.yaml").read_text()) if d]
        for name in ("faceflow-aggregator", "faceflow-ingest"):
            (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
            out[overlay, name] = deployment["spec"]["template"]["spec"]["containers"][0]
    return out


@pytest.fixture(scope="module")
def aggregators(containers: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {overlay: containers[overlay, "faceflow-aggregator"] for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_replica_advertises_its_pod_ip(aggregators: dict[str, dict[str, Any]], overlay: str) -> None:
    container = aggregators[overlay]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "FACEFLOW_AGGREGATOR_ADVERTISE_ADDRESS" not in env, "the default derives it from POD_IP"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    assert (
        advertised_address("", grpc_host="0.0.0.0", port=port, env={"POD_IP": "10.4.0.9"}) == "10.4.0.9:50053"
    )


@pytest.mark.parametrize("overlay", ["prod", "prod-canary"])
def test_with_tls_a_replica_verifies_the_others_as_the_service_name(
    aggregators: dict[str, dict[str, Any]], overlay: str
) -> None:
    env = {e["name"]: e.get("value") for e in aggregators[overlay]["env"]}
    mounts = {m["name"]: m["mountPath"] for m in aggregators[overlay]["volumeMounts"]}
    assert env["FACEFLOW_TLS_CERT_FILE"] == f"{mounts['grpc-tls']}/tls.crt"
    assert env["FACEFLOW_TLS_CA_FILE"] == f"{mounts['grpc-tls']}/ca.crt"
    assert env["FACEFLOW_TLS_SERVER_NAME"] == "faceflow-aggregator"


@pytest.mark.parametrize("overlay", ["prod", "prod-canary"])
def test_with_tls_an_ingest_replica_verifies_the_others_as_the_service_name(
    containers: dict[tuple[str, str], dict[str, Any]], overlay: str
) -> None:
    container = containers[overlay, "faceflow-ingest"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["FACEFLOW_TLS_CA_FILE"] == f"{mounts['grpc-tls']}/ca.crt"
    assert env["FACEFLOW_TLS_SERVER_NAME"] == "faceflow-ingest"
    assert {e["name"]: e for e in container["env"]}["POD_IP"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }

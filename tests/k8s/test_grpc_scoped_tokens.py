"""k8s/components/grpc-scoped-tokens: no overlay includes it (the Secret is the cluster operator's
to create), so it is rendered here on top of each overlay and checked: the tokens Secret mounted
and FACEFLOW_AUTH_TOKENS_FILE set on ingest and the aggregator, the file a server would read."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from faceflow.service.security import ServerSecurity

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUSTOMIZE = ROOT / ".cache" / "bin" / "kustomize"
OVERLAYS = ("dev", "prod", "prod-canary")
MOUNT = "/var/run/secrets/faceflow/grpc-tokens"


def render(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    if not KUSTOMIZE.exists():  # k8s/check.sh installs it (tests/k8s/test_manifests.py runs it first)
        result = subprocess.run(
            ["bash", str(K8S / "check.sh"), "--render-only"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    here = tmp_path / overlay
    here.mkdir()
    up = os.path.relpath(K8S, here)
    (here / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{up}/overlays/{overlay}]\ncomponents: [{up}/components/grpc-scoped-tokens]\n"
    )
    result = subprocess.run([str(KUSTOMIZE), "build", str(here)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_mounts_the_tokens_secret_on_both_client_apis(tmp_path: Path, overlay: str) -> None:
    docs = render(tmp_path, overlay)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for name in ("faceflow-ingest", "faceflow-aggregator"):
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["grpc-tokens"]["secret"] == {
            "secretName": "faceflow-grpc-tokens",
            "defaultMode": 0o440,
            "items": [{"key": "tokens", "path": "tokens"}],
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["grpc-tokens"] == {"name": "grpc-tokens", "mountPath": MOUNT, "readOnly": True}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["FACEFLOW_AUTH_TOKENS_FILE"] == f"{MOUNT}/tokens"
    for name in ("faceflow-analyzer", "faceflow-triton"):  # no client API: no tokens
        pod = deployments[name]["spec"]["template"]["spec"]
        assert "grpc-tokens" not in {v["name"] for v in pod.get("volumes", [])}


def test_the_mounted_file_is_what_a_server_reads(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("admin alice 0123456789abcdef0123\nread dashboard fedcba9876543210fedc\n")
    security = ServerSecurity.from_env({"FACEFLOW_AUTH_TOKENS_FILE": str(tokens)})
    assert [(g.scope.value, g.subject) for g in security.tokens] == [
        ("admin", "alice"),
        ("read", "dashboard"),
    ]
    assert security.describe() == "plaintext, scoped tokens (1 admin, 1 read)"

"""Configuration of the local runtime: one validated object, loaded from the environment and flags.

Environment variables (flags of ``faceflow dev`` override them):

============================== ============================================ ======================
variable                       meaning                                      default
============================== ============================================ ======================
FACEFLOW_HOME                  runtime folder: logs, pids, broker data      ``./.faceflow``
FACEFLOW_CACHE                 downloads: jars, tritonserver, model env     ``$FACEFLOW_HOME/cache``
FACEFLOW_KAFKA_BOOTSTRAP       use this broker instead of starting one      (start our own)
FACEFLOW_TRITON_URL            use this Triton (gRPC host:port) instead     (start our own)
FACEFLOW_DEV_KAFKA_PORT        local broker's client port                   9092
FACEFLOW_DEV_CONTROLLER_PORT   local broker's KRaft controller port         9093
FACEFLOW_DEV_TRITON_HTTP_PORT  local Triton HTTP port                       8000
FACEFLOW_DEV_TRITON_GRPC_PORT  local Triton gRPC port                       8001
FACEFLOW_DEV_TRITON_METRICS_PORT local Triton metrics port                  8002
FACEFLOW_TRITON_REPOSITORY     model repository the local Triton serves     ``./build/triton_repo/cpu``
FACEFLOW_DEV_KAFKA_HEAP        broker JVM heap                              ``512m``
============================== ============================================ ======================

The cache is read-only once filled: ``prepare`` and ``up`` check it and write nothing there when it
is complete, so several homes (``faceflow dev up --home DIR``, whose flag keeps the environment's
cache) share one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from faceflow.errors import ConfigError
from faceflow.runtime import procs

_HOSTPORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True, kw_only=True)
class DevSettings:
    """Where the local runtime lives and listens. Validated on construction."""

    home: Path
    cache: Path
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    controller_port: int = 9093
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    model_repository: Path = Path("build/triton_repo/cpu")
    kafka_heap: str = "512m"
    external_kafka: str | None = None
    external_triton: str | None = None

    def __post_init__(self) -> None:
        ports = {
            "kafka_port": self.kafka_port,
            "controller_port": self.controller_port,
            "triton_http_port": self.triton_http_port,
            "triton_grpc_port": self.triton_grpc_port,
            "triton_metrics_port": self.triton_metrics_port,
        }
        for name, port in ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"expected {name} in 1..65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"expected five different ports, got {ports}")
        for name, value in (("FACEFLOW_KAFKA_BOOTSTRAP", self.external_kafka),):
            if value is not None and not all(_HOSTPORT.match(v.strip()) for v in value.split(",")):
                raise ConfigError(f"expected {name} as host:port[,host:port...], got {value!r}")
        if self.external_triton is not None and not _HOSTPORT.match(self.external_triton):
            raise ConfigError(
                f"expected FACEFLOW_TRITON_URL as the gRPC host:port (e.g. triton:8001), "
                f"got {self.external_triton!r}"
            )
        if not re.fullmatch(r"\d+[mg]", self.kafka_heap):
            raise ConfigError(f"expected a JVM heap size such as 512m or 1g, got {self.kafka_heap!r}")

    # -- derived addresses -------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka or f"{self.host}:{self.kafka_port}"

    @property
    def triton_grpc_url(self) -> str:
        return self.external_triton or f"{self.host}:{self.triton_grpc_port}"

    @property
    def triton_http_url(self) -> str | None:
        """The local server's HTTP address; None for an external Triton (only gRPC is assumed)."""
        return None if self.external_triton else f"{self.host}:{self.triton_http_port}"

    @classmethod
    def on_free_ports(cls, home: Path, cache: Path, **overrides: Any) -> DevSettings:
        """Settings for a private runtime in ``home`` on five ports free at the time of the call, so
        that tests and benchmarks can run one beside a developer's own ``faceflow dev up``.
        ``overrides`` as in :meth:`with_overrides`."""
        ports: set[int] = set()
        while len(ports) < 5:
            ports.add(procs.free_port())
        kafka, controller, http, grpc, metrics = sorted(ports)
        return cls(
            home=home,
            cache=cache,
            kafka_port=kafka,
            controller_port=controller,
            triton_http_port=http,
            triton_grpc_port=grpc,
            triton_metrics_port=metrics,
        ).with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> DevSettings:
        """A copy with the non-None overrides applied (and validated)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def describe(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DevSettings:
        env = os.environ if env is None else env
        home = Path(env.get("FACEFLOW_HOME", ".faceflow")).absolute()
        cache = Path(env.get("FACEFLOW_CACHE", str(home / "cache"))).absolute()

        def port(name: str, default: int) -> int:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise ConfigError(f"expected {name} to be a port number, got {raw!r}") from None

        return cls(
            home=home,
            cache=cache,
            kafka_port=port("FACEFLOW_DEV_KAFKA_PORT", 9092),
            controller_port=port("FACEFLOW_DEV_CONTROLLER_PORT", 9093),
            triton_http_port=port("FACEFLOW_DEV_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=port("FACEFLOW_DEV_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=port("FACEFLOW_DEV_TRITON_METRICS_PORT", 8002),
            model_repository=Path(env.get("FACEFLOW_TRITON_REPOSITORY", "build/triton_repo/cpu")).absolute(),
            kafka_heap=env.get("FACEFLOW_DEV_KAFKA_HEAP", "512m"),
            external_kafka=env.get("FACEFLOW_KAFKA_BOOTSTRAP") or None,
            external_triton=env.get("FACEFLOW_TRITON_URL") or None,
        )

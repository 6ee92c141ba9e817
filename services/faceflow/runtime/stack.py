"""``faceflow dev up | down | status``: the local Kafka broker + Triton server as one stack.

State lives in ``<home>/run/state.json``: which processes this runtime started (pid + kernel start
time, so a reused pid is never mistaken for ours) and where they listen. ``up`` is idempotent:
a component that is running and answering is left alone; one whose process died is restarted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from faceflow import topics
from faceflow.errors import ConfigError, RuntimeStartError
from faceflow.kafka import admin
from faceflow.runtime import kafka_broker, procs, triton_server
from faceflow.runtime.settings import DevSettings

logger = logging.getLogger(__name__)

Component = Literal["kafka", "triton"]
COMPONENTS: tuple[Component, ...] = ("kafka", "triton")


@dataclass(frozen=True, kw_only=True)
class ComponentStatus:
    name: str
    mode: str  # "local" (started by us), "external" (configured address) or "stopped"
    address: str
    ready: bool
    pid: int | None = None
    log: str | None = None
    detail: str = ""


def _say(quiet: bool) -> Callable[[str], None]:
    """Progress lines for the person at the terminal (the CLI's user-facing output)."""

    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)  # noqa: T201

    return say


class DevStack:
    """The local runtime described by one :class:`DevSettings`."""

    def __init__(self, settings: DevSettings) -> None:
        self.settings = settings
        self.state_path = settings.run_dir / "state.json"

    # -- state ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, procs.ProcessRecord]:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable runtime state %s: %s", self.state_path, exc)
            return {}
        return {name: procs.ProcessRecord(**rec) for name, rec in raw.get("processes", {}).items()}

    def _save(self, records: dict[str, procs.ProcessRecord]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "processes": {name: asdict(rec) for name, rec in records.items()},
            "kafka_bootstrap": self.settings.kafka_bootstrap,
            "triton_grpc_url": self.settings.triton_grpc_url,
            "triton_http_url": self.settings.triton_http_url,
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(self.state_path)

    # -- up ------------------------------------------------------------------------------------
    def up(
        self, components: Sequence[Component] = COMPONENTS, *, quiet: bool = False
    ) -> list[ComponentStatus]:
        say = _say(quiet)
        for name in components:
            if name not in COMPONENTS:
                raise ConfigError(f"expected components among {COMPONENTS}, got {name!r}")
        records = self._load()
        if "kafka" in components:
            self._up_kafka(records, say)
        if "triton" in components:
            self._up_triton(records, say)
        return self.status(components)

    def _up_kafka(self, records: dict[str, procs.ProcessRecord], say: Callable[[str], None]) -> None:
        s = self.settings
        bootstrap = s.kafka_bootstrap
        if s.external_kafka:
            say(f"kafka: using the external broker at {bootstrap} (FACEFLOW_KAFKA_BOOTSTRAP)")
            procs.wait_until(
                f"the Kafka broker at {bootstrap}",
                lambda: admin.broker_answers_metadata(bootstrap),
                timeout_s=30,
            )
        else:
            rec = records.get("kafka")
            if rec is not None and rec.is_alive() and admin.broker_answers_metadata(bootstrap):
                say(f"kafka: already running at {bootstrap} (pid {rec.pid})")
            else:
                if rec is not None and rec.is_alive():
                    say(f"kafka: pid {rec.pid} is not answering; restarting it")
                    procs.stop(rec)
                say(f"kafka: starting Apache Kafka {kafka_broker.KAFKA_VERSION} (KRaft) at {bootstrap}")
                install = kafka_broker.ensure_jars(s.cache, say=say)
                rec = kafka_broker.start(s, install)
                records["kafka"] = rec
                self._save(records)
                started = time.monotonic()
                procs.wait_until(
                    "the Kafka broker",
                    lambda: admin.broker_answers_metadata(bootstrap),
                    timeout_s=kafka_broker.START_TIMEOUT_S,
                    record=rec,
                )
                say(f"kafka: ready in {time.monotonic() - started:.1f} s (log {rec.log})")
        outcome = admin.ensure_topics(bootstrap, topics.ALL_TOPICS)
        created = [name for name, what in outcome.items() if what == "created"]
        say(f"kafka: topics {'created ' + ', '.join(created) if created else 'present'}")

    def _up_triton(self, records: dict[str, procs.ProcessRecord], say: Callable[[str], None]) -> None:
        s = self.settings
        url = s.triton_grpc_url
        if s.external_triton:
            say(f"triton: using the external server at {url} (FACEFLOW_TRITON_URL)")
            procs.wait_until(f"Triton at {url}", lambda: _grpc_ready(url), timeout_s=30)
            return
        http = s.triton_http_url or ""
        rec = records.get("triton")
        if rec is not None and rec.is_alive() and self._triton_answers(http, url):
            say(f"triton: already running at grpc {url}, http {http} (pid {rec.pid})")
            return
        if rec is not None and rec.is_alive():
            say(f"triton: pid {rec.pid} is not answering; restarting it")
            procs.stop(rec)
        say(f"triton: starting tritonserver serving {s.model_repository} at grpc {url}, http {http}")
        install = triton_server.ensure_tritonserver(s.cache, say=say)
        model_env = triton_server.ensure_model_env(s.cache, say=say)
        rec = triton_server.start(s, install, model_env)
        records["triton"] = rec
        self._save(records)
        started = time.monotonic()
        procs.wait_until(
            "Triton",
            lambda: triton_server.http_ready(http),
            timeout_s=triton_server.START_TIMEOUT_S,
            record=rec,
            summarize=triton_server.summarize_log,
        )
        if self._has_probe_model(http):
            procs.wait_until(
                f"a real inference on {triton_server.PROBE_MODEL}",
                lambda: bool(triton_server.probe_inference(url)),
                timeout_s=60,
                record=rec,
                summarize=triton_server.summarize_log,
            )
        say(f"triton: ready in {time.monotonic() - started:.1f} s (log {rec.log})")

    def _has_probe_model(self, http: str) -> bool:
        return any(m.get("name") == triton_server.PROBE_MODEL for m in triton_server.model_index(http))

    def _triton_answers(self, http: str, url: str) -> bool:
        if not triton_server.http_ready(http):
            return False
        try:
            if self._has_probe_model(http):
                triton_server.probe_inference(url, timeout_s=10)
        except Exception as exc:  # noqa: BLE001 - any failure means "not answering"
            logger.info("triton at %s is up but its probe inference failed: %s", url, exc)
            return False
        return True

    # -- down ----------------------------------------------------------------------------------
    def down(self, *, quiet: bool = False) -> list[str]:
        """Stop what this runtime started (never an external component). Returns what was stopped."""
        say = _say(quiet)
        records = self._load()
        stopped = []
        # Triton first: it holds no state; the broker then shuts down cleanly on SIGTERM.
        for name in ("triton", "kafka"):
            rec = records.pop(name, None)
            if rec is None:
                continue
            if procs.stop(rec):
                stopped.append(name)
                say(f"{name}: stopped (pid {rec.pid})")
            else:
                say(f"{name}: was not running")
        self._save(records)
        if not stopped:
            say("nothing was running")
        return stopped

    # -- status --------------------------------------------------------------------------------
    def status(self, components: Sequence[Component] = COMPONENTS) -> list[ComponentStatus]:
        records = self._load()
        out = []
        for name in components:
            out.append(self._kafka_status(records) if name == "kafka" else self._triton_status(records))
        return out

    def _kafka_status(self, records: dict[str, procs.ProcessRecord]) -> ComponentStatus:
        s = self.settings
        if s.external_kafka:
            ready = admin.broker_answers_metadata(s.kafka_bootstrap)
            return ComponentStatus(name="kafka", mode="external", address=s.kafka_bootstrap, ready=ready)
        rec = records.get("kafka")
        if rec is None or not rec.is_alive():
            return ComponentStatus(
                name="kafka",
                mode="stopped",
                address=s.kafka_bootstrap,
                ready=False,
                log=rec.log if rec else None,
            )
        ready = admin.broker_answers_metadata(s.kafka_bootstrap)
        return ComponentStatus(
            name="kafka",
            mode="local",
            address=s.kafka_bootstrap,
            ready=ready,
            pid=rec.pid,
            log=rec.log,
            detail=f"data {s.run_dir / 'kafka' / 'data'}",
        )

    def _triton_status(self, records: dict[str, procs.ProcessRecord]) -> ComponentStatus:
        s = self.settings
        if s.external_triton:
            return ComponentStatus(
                name="triton",
                mode="external",
                address=s.triton_grpc_url,
                ready=_grpc_ready(s.triton_grpc_url),
            )
        rec = records.get("triton")
        address = f"grpc {s.triton_grpc_url}, http {s.triton_http_url}"
        if rec is None or not rec.is_alive():
            return ComponentStatus(
                name="triton", mode="stopped", address=address, ready=False, log=rec.log if rec else None
            )
        http = s.triton_http_url or ""
        ready = self._triton_answers(http, s.triton_grpc_url)
        detail = ""
        if ready:
            models = triton_server.model_index(http)
            detail = "models " + ", ".join(f"{m.get('name')}={m.get('state', '?')}" for m in models)
        return ComponentStatus(
            name="triton", mode="local", address=address, ready=ready, pid=rec.pid, log=rec.log, detail=detail
        )


def _grpc_ready(url: str) -> bool:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415 - heavy import

    client = grpcclient.InferenceServerClient(url)
    try:
        return bool(client.is_server_ready(client_timeout=3))
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def format_status(statuses: Sequence[ComponentStatus]) -> str:
    lines = []
    for st in statuses:
        state = "ready" if st.ready else ("NOT READY" if st.mode != "stopped" else "stopped")
        pid = f" pid {st.pid}" if st.pid else ""
        lines.append(f"{st.name:7} {st.mode:8} {state:9} {st.address}{pid}")
        if st.log:
            lines.append(f"{'':7} log {st.log}")
        if st.detail:
            lines.append(f"{'':7} {st.detail}")
    return "\n".join(lines)


def require_ready(statuses: Sequence[ComponentStatus]) -> None:
    bad = [st for st in statuses if not st.ready]
    if bad:
        raise RuntimeStartError("not ready: " + ", ".join(f"{st.name} ({st.mode})" for st in bad))

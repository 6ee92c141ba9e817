"""The analyzer service: a consumer group on the frames topic, Triton, the analyses topic.

:class:`AnalyzerService` wires the shared pieces together: a :class:`~faceflow.service.consume.ConsumeLoop`
(cooperative-sticky group member, micro-batches, at-least-once commits, DLQ, pause/resume) around an
:class:`~faceflow.analyzer.processor.AnalyzerProcessor`, a :class:`~faceflow.service.triton.TritonClient`
with deadlines, a gRPC server that serves only health and reflection, and Prometheus metrics.

Readiness (gRPC health ``SERVING``) means: the consume loop is healthy and the last real Triton
inference succeeded. When no frame has gone through Triton for ``probe_interval_s``, a probe
inference on ``face_pipeline`` keeps that fact current (Triton's own health stays green when a
python stub dies). The served models' provenance is refreshed at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from opentelemetry.metrics import CallbackOptions, Observation

from faceflow.analyzer.backends import Backend, PipelineBackend, ScheduledBackend
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.analyzer.processor import AnalyzerProcessor
from faceflow.core.scheduling import ScheduleMode, SchedulePolicy
from faceflow.errors import FaceflowError
from faceflow.kafka.clients import group_consumer, make_producer, wait_for_topics
from faceflow.service.consume import ConsumeLoop, LoopConfig
from faceflow.service.grpc_server import GrpcServer, ServerSettings
from faceflow.service.metrics import ServiceMetrics
from faceflow.service.triton import FaceModels, ServedModel, TritonClient
from faceflow.topics import ANALYSES_MAX_MESSAGE_BYTES

logger = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
#: A probe inference is tiny: a Triton that cannot answer it this fast is not ready.
PROBE_TIMEOUT_S = 5.0


class AnalyzerMetrics:
    """The analyzer's instruments (no client-supplied labels: partitions and fixed kinds only)."""

    def __init__(self, service: AnalyzerService) -> None:
        self.base = ServiceMetrics(
            "faceflow-analyzer",
            histograms={
                "faceflow.analyzer.batch.size": BATCH_BUCKETS,
                "faceflow.analyzer.triton.latency": (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            },
        )
        meter = self.base.meter
        self._service = service
        self.frames = meter.create_counter("faceflow.analyzer.frames", description="Frames by outcome")
        self.faces = meter.create_counter("faceflow.analyzer.faces", description="Faces detected / analyzed")
        self.batch = meter.create_histogram(
            "faceflow.analyzer.batch.size", description="Frames per Triton call"
        )
        self.latency = meter.create_histogram(
            "faceflow.analyzer.triton.latency", unit="s", description="Time in Triton per micro-batch"
        )
        meter.create_observable_gauge(
            "faceflow.analyzer.consumer.lag",
            callbacks=[self._lag],
            description="Records behind, per partition",
        )
        meter.create_observable_gauge(
            "faceflow.analyzer.triton.ready", callbacks=[self._ready], description="1 when Triton answers"
        )
        meter.create_observable_gauge(
            "faceflow.analyzer.paused", callbacks=[self._paused], description="1 while consumption is paused"
        )

    def on_frames(self, analyzed: int, detected: int, faces_analyzed: int, dlq: int) -> None:
        if analyzed:
            self.frames.add(analyzed, {"outcome": "analyzed"})
        if dlq:
            self.frames.add(dlq, {"outcome": "dlq"})
        if detected:
            self.faces.add(detected, {"kind": "detected"})
        if faces_analyzed:
            self.faces.add(faces_analyzed, {"kind": "analyzed"})

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch.record(size)
        self.latency.record(seconds)

    def _lag(self, options: CallbackOptions) -> list[Observation]:
        loop = self._service.loop
        if loop is None:
            return []
        return [Observation(lag, {"partition": str(p)}) for p, lag in sorted(loop.stats.lag.items())]

    def _ready(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(1 if self._service.triton_ready else 0)]

    def _paused(self, options: CallbackOptions) -> list[Observation]:
        loop = self._service.loop
        return [Observation(1 if loop is not None and loop.stats.paused else 0)]


def make_backend(config: AnalyzerConfig, client: FaceModels) -> Backend:
    if config.schedule is ScheduleMode.ALL:
        return PipelineBackend(client)
    policy = SchedulePolicy(
        mode=ScheduleMode.ADAPTIVE, max_age_s=config.max_age_s, quality_margin=config.quality_margin
    )
    return ScheduledBackend(client, policy)


class AnalyzerService:
    """Frames -> Triton -> analyses; a :class:`~faceflow.service.main.Runnable`.

    Args:
        config: the validated settings.
        triton: a client to use instead of one made from ``config.triton_url`` (tests).
    """

    def __init__(self, config: AnalyzerConfig, *, triton: FaceModels | None = None) -> None:
        self.config = config
        self.triton: FaceModels = triton or TritonClient(config.triton_url, timeout_s=config.triton_timeout_s)
        self.metrics = AnalyzerMetrics(self)
        self.backend = make_backend(config, self.triton)
        self.loop: ConsumeLoop | None = None
        self.server: GrpcServer | None = None
        self.triton_ready = False
        self._models: Sequence[ServedModel] = ()
        self._models_lock = threading.Lock()
        self._last_ok = 0.0
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        self.processor = AnalyzerProcessor(
            self.backend,
            analyses_topic=config.analyses_topic,
            models=self.models,
            include_parsing=config.include_parsing,
            on_frames=self.metrics.on_frames,
        )

    # -- Runnable ------------------------------------------------------------------------------------
    def start(self) -> None:
        c = self.config
        logger.info("analyzer config: %s", ", ".join(f"{k}={v}" for k, v in c.describe().items()))
        producer = make_producer(
            c.kafka_bootstrap, client_id=c.client_id, max_request_size=ANALYSES_MAX_MESSAGE_BYTES
        )
        try:
            partitions = wait_for_topics(
                producer,
                [c.frames_topic, c.analyses_topic, c.dlq_topic],
                bootstrap=c.kafka_bootstrap,
                timeout_s=30,
            )
        except FaceflowError:
            producer.close(timeout=1)
            raise
        consumer = group_consumer(
            c.kafka_bootstrap,
            group_id=c.group_id,
            client_id=c.client_id,
            instance_id=c.instance_id,
            session_timeout_ms=c.session_timeout_ms,
            max_poll_interval_ms=c.max_poll_interval_ms,
        )
        self.loop = ConsumeLoop(
            LoopConfig(
                service="analyzer",
                topics=(c.frames_topic,),
                dlq_topic=c.dlq_topic,
                max_batch_records=c.max_batch_frames,
                max_wait_ms=c.max_wait_ms,
                max_pending=c.max_pending,
                concurrency=c.concurrency,
            ),
            consumer=consumer,
            producer=producer,
            processor=self.processor,
            on_batch=self._on_batch,
        )
        self.metrics.base.serve(c.metrics_host, c.metrics_port)
        self.server = GrpcServer(
            "analyzer", ServerSettings(host=c.grpc_host, port=c.grpc_port), [], metrics=self.metrics.base
        )
        self.server.start(serving=False)
        self._probe_once()
        self.loop.start()
        self._prober = threading.Thread(target=self._probe_loop, name="analyzer-probe", daemon=True)
        self._prober.start()
        logger.info(
            "analyzer: %s (%d partitions) -> %s via Triton %s, schedule %s",
            c.frames_topic,
            partitions[c.frames_topic],
            c.analyses_topic,
            c.triton_url,
            c.schedule,
        )

    def stop(self, grace_s: float) -> None:
        self._stop.set()
        stopped = self.server.stop(grace_s) if self.server is not None else None
        if self.loop is not None:
            self.loop.stop(grace_s)
        if stopped is not None:
            stopped.wait(grace_s)
        self.metrics.base.shutdown()
        self.triton.close()
        logger.info("analyzer stopped")

    def failure(self) -> BaseException | None:
        return self.loop.failure() if self.loop is not None else None

    # -- readiness and provenance ---------------------------------------------------------------------
    def models(self) -> Sequence[ServedModel]:
        with self._models_lock:
            return self._models

    @property
    def ready(self) -> bool:
        return self.triton_ready and self.loop is not None and self.loop.healthy

    def _set_ready(self, triton_ok: bool) -> None:
        self.triton_ready = triton_ok
        if self.server is not None:
            self.server.set_serving(self.ready)

    def _probe_once(self) -> None:
        try:
            self.triton.probe(timeout_s=min(PROBE_TIMEOUT_S, self.config.triton_timeout_s))
            infos = self.triton.model_infos()
        except FaceflowError as exc:
            if self.triton_ready:
                logger.warning("analyzer: Triton at %s failed its probe: %s", self.config.triton_url, exc)
            self._set_ready(False)
            return
        with self._models_lock:
            changed = [m.weights for m in infos] != [m.weights for m in self._models]
            self._models = infos
        if changed:
            for m in infos:
                if m.random_init:
                    logger.warning(
                        "analyzer: %s runs RANDOM-INIT weights: its results are meaningless", m.name
                    )
        self._last_ok = time.monotonic()
        self._set_ready(True)

    def _probe_loop(self) -> None:
        interval = self.config.probe_interval_s
        while not self._stop.wait(min(interval, 1.0)):
            if self.loop is not None and self.loop.failure() is not None:
                self._set_ready(False)
                continue
            if time.monotonic() - self._last_ok >= interval or not self.triton_ready or not self.models():
                self._probe_once()
            elif self.server is not None:
                self.server.set_serving(self.ready)

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.on_batch(size, seconds)
        self._last_ok = time.monotonic()
        if not self.triton_ready:
            self._set_ready(True)

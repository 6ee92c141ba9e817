"""The aggregator service: analyses -> tracks, identities, fusion -> faces topic, state topic, gRPC.

:class:`AggregatorService` wires the pieces: the gallery (loaded from and tailed on
faceflow.identities.v1), a :class:`~faceflow.service.consume.ConsumeLoop` in a cooperative-sticky
group on the analyses topic (processing in the loop's thread: tracking is fast, and rebalances then
never race a batch) around an :class:`~faceflow.aggregator.processor.AggregatorProcessor`, the
faces-topic tail for subscriptions, the ``faceflow.v1.Aggregator`` gRPC API and metrics.
"""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry.metrics import CallbackOptions, Observation

from faceflow import topics
from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.gallery import GallerySync
from faceflow.aggregator.grpc_api import SERVICE_NAME, AggregatorServicer
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.aggregator.routing import Router
from faceflow.aggregator.state import read_partition
from faceflow.aggregator.subscriptions import Hub
from faceflow.core.identity import Gallery, IdentityKind
from faceflow.errors import FaceflowError, ServiceStartError
from faceflow.kafka.clients import group_consumer, make_producer, wait_for_topics
from faceflow.kafka.membership import AdvertisingAssignor, GroupWatch
from faceflow.service.consume import ConsumeLoop, LoopConfig
from faceflow.service.grpc_server import GrpcServer, ServerSettings, ServiceBinding
from faceflow.service.metrics import ServiceMetrics
from faceflow.service.peers import advertised_address, peer_transport_from_env
from faceflow.service.triton import FaceModels, TritonClient
from faceflow.v1 import aggregator_pb2_grpc

logger = logging.getLogger(__name__)


class AggregatorService:
    """See the module docstring; a :class:`~faceflow.service.main.Runnable`."""

    def __init__(self, config: AggregatorConfig, *, triton: FaceModels | None = None) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.gallery = Gallery()
        self._triton = triton
        self._triton_lock = threading.Lock()
        self.metrics = ServiceMetrics("faceflow-aggregator")
        self.loop: ConsumeLoop | None = None
        self.server: GrpcServer | None = None
        self.hub: Hub | None = None
        self.sync: GallerySync | None = None
        self.processor: AggregatorProcessor | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.router: Router | None = None
        #: The gRPC address advertised to the group ("" until the server is bound): docs/aggregator.md.
        self.advertised = ""

    def triton(self) -> FaceModels:
        """The Triton client for enrolment, made on first use (the aggregator needs none otherwise)."""
        with self._triton_lock:
            if self._triton is None:
                self._triton = TritonClient(self.config.triton_url, timeout_s=120)
            return self._triton

    # -- Runnable ----------------------------------------------------------------------------------
    def start(self) -> None:
        c = self.config
        logger.info("aggregator config: %s", ", ".join(f"{k}={v}" for k, v in c.describe().items()))
        producer = make_producer(
            c.kafka_bootstrap, client_id=c.client_id, max_request_size=topics.AGGREGATOR_STATE_MAX_BYTES
        )
        try:
            needed = [
                c.analyses_topic,
                c.faces_topic,
                c.state_topic,
                c.identities_topic,
                c.audit_topic,
                c.dlq_topic,
            ]
            partitions = wait_for_topics(
                producer,
                needed + ([c.faces_json_topic] if c.faces_json_mirror else []),
                bootstrap=c.kafka_bootstrap,
                timeout_s=30,
            )
            if partitions[c.state_topic] < partitions[c.analyses_topic]:
                raise ServiceStartError(
                    f"{c.state_topic} has {partitions[c.state_topic]} partitions, fewer than "
                    f"{c.analyses_topic} ({partitions[c.analyses_topic]}): a stream's checkpoint goes to the "
                    "state partition with its analyses partition's number"
                )
        except FaceflowError:
            producer.close(timeout=1)
            raise
        self.sync = GallerySync(
            c.kafka_bootstrap, c.identities_topic, self.gallery, self.lock, producer, on_removed=self._erased
        )
        self.processor = AggregatorProcessor(
            c,
            gallery=self.gallery,
            lock=self.lock,
            restore=lambda p: read_partition(c.kafka_bootstrap, c.state_topic, p),
            sync=self.sync,
        )
        self.sync.load()
        self.sync.start()
        self.hub = Hub(
            c.kafka_bootstrap, c.faces_topic, max_subscribers=c.max_subscribers, capacity=c.subscriber_queue
        )
        self.hub.start()
        consumer = group_consumer(
            c.kafka_bootstrap,
            group_id=c.group_id,
            client_id=c.client_id,
            instance_id=c.instance_id,
            session_timeout_ms=c.session_timeout_ms,
            max_poll_interval_ms=c.max_poll_interval_ms,
            assignor=AdvertisingAssignor(lambda: self.advertised),
        )
        self.loop = ConsumeLoop(
            LoopConfig(
                service="aggregator",
                topics=(c.analyses_topic,),
                dlq_topic=c.dlq_topic,
                max_batch_records=c.max_batch,
                max_wait_ms=0,
                max_pending=max(256, c.max_batch),
                inline=True,
            ),
            consumer=consumer,
            producer=producer,
            processor=self.processor,
        )
        self._instruments()
        self.metrics.serve(c.metrics_host, c.metrics_port)
        self.router = Router(
            watch=GroupWatch.of_broker(c.kafka_bootstrap, c.group_id, c.analyses_topic),
            partitions=partitions[c.analyses_topic],
            owned=self._owned_partitions,
            address=lambda: self.advertised,
            transport=peer_transport_from_env(),
        )
        servicer = AggregatorServicer(
            processor=self.processor,
            gallery=self.gallery,
            lock=self.lock,
            sync=self.sync,
            hub=self.hub,
            bootstrap=c.kafka_bootstrap,
            faces_topic=c.faces_topic,
            subscriber_queue=c.subscriber_queue,
            triton=self.triton,
            partitions=self._owned_partitions,
            router=self.router,
        )
        self.server = GrpcServer(
            "aggregator",
            ServerSettings(host=c.grpc_host, port=c.grpc_port, workers=c.grpc_workers),
            [ServiceBinding(SERVICE_NAME, aggregator_pb2_grpc.add_AggregatorServicer_to_server, servicer)],
            metrics=self.metrics,
        )
        self.server.start(serving=False)
        self.advertised = advertised_address(
            c.advertise_address, grpc_host=c.grpc_host, port=self.server.port, env=os.environ
        )
        logger.info(
            "aggregator: advertising %s to group %s; calls for other replicas' streams go there %s",
            self.advertised,
            c.group_id,
            self.router.transport.describe(),
        )
        self.loop.start()
        self._watch = threading.Thread(target=self._readiness, name="aggregator-ready", daemon=True)
        self._watch.start()
        logger.info(
            "aggregator: %s -> %s; %d identities in the gallery",
            c.analyses_topic,
            c.faces_topic,
            len(self.gallery),
        )

    def stop(self, grace_s: float) -> None:
        self._stop.set()
        stopped = self.server.stop(grace_s) if self.server is not None else None
        if self.hub is not None:
            self.hub.stop()
        if self.loop is not None:
            self.loop.stop(grace_s)
        if self.sync is not None:
            self.sync.stop()
        if stopped is not None:
            stopped.wait(grace_s)
        if self.router is not None:
            self.router.close()
        self.metrics.shutdown()
        if self._triton is not None:
            self._triton.close()
        logger.info("aggregator stopped")

    def failure(self) -> BaseException | None:
        return self.loop.failure() if self.loop is not None else None

    # -- helpers -----------------------------------------------------------------------------------
    def _owned_partitions(self) -> set[int]:
        return {tp.partition for tp in (self.loop.assignment() if self.loop else set())}

    def _erased(self, identity_id: str) -> None:
        if self.processor is not None:
            self.processor.erase(identity_id)  # streams, and every checkpoint that holds it

    def _readiness(self) -> None:
        while not self._stop.wait(1.0):
            if self.server is not None and self.loop is not None:
                self.server.set_serving(self.loop.healthy)

    def _instruments(self) -> None:
        meter = self.metrics.meter

        def streams(options: CallbackOptions) -> list[Observation]:
            with self.lock:
                owned = self.processor.owned() if self.processor else []
                tracks = sum(len(o.analytics.tracks) for _, o in owned)
            return [
                Observation(len(owned), {"what": "streams"}),
                Observation(tracks, {"what": "active_tracks"}),
            ]

        def identities(options: CallbackOptions) -> list[Observation]:
            with self.lock:
                entries = self.gallery.entries()
            return [
                Observation(sum(1 for e in entries if e.kind is kind), {"kind": kind.value})
                for kind in IdentityKind
            ]

        def counters(options: CallbackOptions) -> list[Observation]:
            p = self.processor
            loop = self.loop
            return [
                Observation(p.events if p else 0, {"what": "events"}),
                Observation(p.duplicates if p else 0, {"what": "duplicates"}),
                Observation(loop.stats.dlq if loop else 0, {"what": "dlq"}),
                Observation(self.hub.subscribers if self.hub else 0, {"what": "subscribers"}),
            ]

        def lag(options: CallbackOptions) -> list[Observation]:
            loop = self.loop
            return (
                []
                if loop is None
                else [Observation(v, {"partition": str(k)}) for k, v in sorted(loop.stats.lag.items())]
            )

        meter.create_observable_gauge(
            "faceflow.aggregator.state", callbacks=[streams], description="Owned streams, active tracks"
        )
        meter.create_observable_gauge(
            "faceflow.aggregator.identities", callbacks=[identities], description="Gallery by kind"
        )
        meter.create_observable_counter(
            "faceflow.aggregator.records",
            callbacks=[counters],
            description="Events, repeats, DLQ, subscribers",
        )
        meter.create_observable_gauge(
            "faceflow.aggregator.consumer.lag", callbacks=[lag], description="Records behind, per partition"
        )

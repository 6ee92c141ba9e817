"""Metrics for every service: an OpenTelemetry meter provider exported for Prometheus, and a bound
on label cardinality.

Each :class:`ServiceMetrics` owns its ``MeterProvider`` and Prometheus registry (two services in
one process, as in tests, never mix their numbers) and serves ``/metrics`` on a port.

Labels whose values come from clients (stream ids above all) go through a :class:`LabelBudget`:
the first ``max_values`` distinct values are kept as they are, later ones are reported as
``_other``, so a client that invents stream ids can not grow a metric (or any map keyed by a
label) without limit. The budget is per metrics object and never shrinks: a metric series, once
exported, stays (Prometheus would see a counter reset otherwise).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from faceflow.errors import ServiceStartError

logger = logging.getLogger(__name__)

#: Latency buckets, seconds: from a fast local call to a stalled dependency.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Distinct values a client-supplied label keeps before later ones become ``OTHER``.
DEFAULT_LABEL_BUDGET = 256
OTHER = "_other"


class LabelBudget:
    """A bounded set of label values: the first ``max_values`` pass, the rest become ``_other``.

    Thread-safe. ``len(budget)`` never exceeds ``max_values``.
    """

    def __init__(self, max_values: int = DEFAULT_LABEL_BUDGET) -> None:
        if max_values < 1:
            raise ValueError(f"max_values: expected >= 1, got {max_values}")
        self.max_values = max_values
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.overflowed = 0

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.max_values:
                self._seen.add(value)
                return value
            self.overflowed += 1
        return OTHER

    def __len__(self) -> int:
        return len(self._seen)


class BoundedCounter:
    """Counts per key for the ``max_keys`` most recently used keys (LRU); older keys are dropped.

    For in-process tallies keyed by client input (drops per stream, ...), where the Prometheus
    counter keeps the long-run total under a :class:`LabelBudget` label.
    """

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys: expected >= 1, got {max_keys}")
        self.max_keys = max_keys
        self._counts: OrderedDict[object, int] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: object, n: int = 1) -> int:
        """Add ``n`` to ``key``'s count; return the new count."""
        with self._lock:
            value = self._counts.pop(key, 0) + n
            self._counts[key] = value
            while len(self._counts) > self.max_keys:
                self._counts.popitem(last=False)
            return value

    def get(self, key: object) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def items(self) -> list[tuple[object, int]]:
        with self._lock:
            return list(self._counts.items())

    def __len__(self) -> int:
        return len(self._counts)


class ServiceMetrics:
    """A meter provider with a Prometheus registry and its ``/metrics`` endpoint.

    Args:
        service: the ``service.name`` resource attribute (``faceflow-analyzer``...).
        histograms: instrument names that get :data:`LATENCY_BUCKETS` (or their own boundaries).
        label_budget: distinct values kept per client-supplied label (see :class:`LabelBudget`).
    """

    def __init__(
        self,
        service: str,
        *,
        histograms: dict[str, Sequence[float]] | Sequence[str] = (),
        label_budget: int = DEFAULT_LABEL_BUDGET,
    ) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self._reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)
        bounds = histograms if isinstance(histograms, dict) else dict.fromkeys(histograms, LATENCY_BUCKETS)
        views = [
            View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries=tuple(b)))
            for name, b in bounds.items()
        ]
        self._provider = MeterProvider(
            metric_readers=[self._reader], resource=Resource.create({"service.name": service}), views=views
        )
        self.meter: Meter = self._provider.get_meter(service.replace("-", "."))
        self.streams = LabelBudget(label_budget)
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def stream_label(self, stream_id: str) -> str:
        """The ``stream_id`` label value for a client-supplied stream id (bounded)."""
        return self.streams(stream_id)

    def render(self) -> str:
        """The Prometheus text exposition, as ``/metrics`` serves it."""
        return generate_latest(self.registry).decode()

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 picks a free port); return the port.

        Raises:
            ServiceStartError: the port cannot be bound.
        """
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ServiceStartError(
                f"{self.service}: cannot serve metrics on {host}:{port}: {exc.strerror or exc} (port taken?)"
            ) from exc
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        logger.info("%s metrics on http://%s:%d/metrics", self.service, host, self.port)
        return self.port

    def shutdown(self) -> None:
        """Stop the HTTP server and the meter provider; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._provider.shutdown()

"""Prometheus metrics with SageMaker's names, in the app's own registry (SPEC §5).

Times are in seconds (Prometheus' base unit; SageMaker's CloudWatch reports
microseconds or milliseconds for the same names: ``docs/metrics.md`` maps each one).
Series are labelled by endpoint, variant and instance only: no label per model, so
the output does not grow with the number of models. Per-model numbers live in
:class:`~modelyard.stats.ModelStats` (``metrics.models``) instead.

The hot path only adds to plain ints and lists; the Prometheus families are built
when ``/metrics`` is scraped. Every update happens on the event loop thread (the
cache reports its events there too), so nothing needs a lock.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from modelyard.entries import CacheEvents
from modelyard.errors import ArtifactNotFound, InvalidTargetModel, ModelyardError
from modelyard.stats import ModelStats

if TYPE_CHECKING:
    from modelyard.cache import ModelCache
    from modelyard.entries import Entry

__all__ = [
    "BUCKETS",
    "CLOSE_REASONS",
    "CONTENT_TYPE",
    "EVICTION_REASONS",
    "ConnectionCounts",
    "Histogram",
    "Metrics",
    "MetricsHub",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("EndpointName", "VariantName", "Instance")
BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Histogram bounds in seconds: a warm request (~0.1–0.3 ms) to a load timing out (60 s)."""
EVICTION_REASONS = ("capacity", "replaced", "cache_disabled", "unloaded", "invalidated", "shutdown")
"""Why a model leaves memory: ``Reason`` label values of ``ModelEvictions_total``."""
CLOSE_REASONS = (
    "header_timeout",
    "body_timeout",
    "request_timeout",
    "send_timeout",
    "keep_alive_timeout",
    "head_too_large",
    "evicted",
    "over_capacity",
)
"""Why the server closed a client connection: ``Reason`` label values of ``ConnectionsClosed_total``."""
_LE = [*(floatToGoString(b) for b in BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]


class Histogram:
    """Counts per bucket of :data:`BUCKETS` and a sum; rendered as a Prometheus histogram."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1  # bucket ``le`` counts values <= le
        self.total += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count <= le)`` pairs, ``+Inf`` last."""
        out, seen = [], 0
        for le, count in zip(_LE, self.counts, strict=True):
            seen += count
            out.append((le, float(seen)))
        return out


class Metrics(CacheEvents):
    """The endpoint's metrics and per-model statistics; also the cache's event sink."""

    def __init__(self, endpoint: str, variant: str, instance: str, *, max_models: int = 1_000_000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = (endpoint, variant, instance)
        self.cache: ModelCache | None = None
        self.models = ModelStats(max_models=max_models)
        """Per-model statistics (no Prometheus label per model)."""
        self.started = time.time()
        self.invocations = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self.loads = 0
        self.evictions = dict.fromkeys(EVICTION_REASONS, 0)
        self.failures: dict[str, int] = {}  # by error code: a fixed set, so a bounded label
        self.loading_wait = Histogram()
        self.downloading = Histogram()
        self.loading = Histogram()
        self.unloading = Histogram()
        self.model_latency = Histogram()
        self.overhead_latency = Histogram()
        self.recent_errors: deque[tuple[float, str, str | None, int, str, str]] = deque(maxlen=50)
        """``(time, request id, target, status, code, message)`` of the last failed requests."""
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    # -- requests (the hot path) --------------------------------------------------

    def count_status(self, status: int) -> None:
        """Count one invocation and its error class."""
        self.invocations += 1
        if status >= 500:
            self.errors_5xx += 1
        elif status >= 400:
            self.errors_4xx += 1

    def invoked(self, target: str | None, model_seconds: float, seconds: float) -> None:
        """A request to ``target`` answered in ``seconds``, ``model_seconds`` of them in the model."""
        self.invocations += 1
        self.model_latency.observe(model_seconds)
        overhead = seconds - model_seconds
        self.overhead_latency.observe(overhead if overhead > 0.0 else 0.0)
        self.models.request(target, seconds)

    def refused(self, target: str | None, status: int, code: str, message: str, request_id: str) -> None:
        """A request to ``target`` answered with an error."""
        self.count_status(status)
        self.models.error(target)
        self.recent_errors.append((time.time(), request_id, target, status, code, message))

    # -- cache events -------------------------------------------------------------

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def waited(self, seconds: float) -> None:
        self.loading_wait.observe(seconds)

    def downloaded(self, seconds: float, *, from_disk: bool) -> None:
        if from_disk:
            self.disk_hits += 1
        else:
            self.downloading.observe(seconds)

    def loaded(self, seconds: float) -> None:
        self.loads += 1
        self.loading.observe(seconds)

    def unloaded(self, seconds: float) -> None:
        self.unloading.observe(seconds)

    def evicted(self, reason: str) -> None:
        if reason in self.evictions:
            self.evictions[reason] += 1

    def load_failed(self, error: BaseException) -> None:
        code = error.code if isinstance(error, ModelyardError) else "InternalFailure"
        self.failures[code] = self.failures.get(code, 0) + 1

    def model_loaded(self, entry: Entry) -> None:
        self.models.loaded(entry)

    def model_evicted(self, entry: Entry, reason: str) -> None:
        self.models.evicted(entry)

    def model_failed(self, target: str, error: BaseException, seconds: float) -> None:
        code = error.code if isinstance(error, ModelyardError) else "InternalFailure"
        exists = not isinstance(error, ArtifactNotFound | InvalidTargetModel)
        self.models.failed(target, code, str(error), exists=exists)


class ConnectionCounts:
    """The HTTP server's client connections: open now, the cap, and those the server closed, by reason.

    Server-wide, so these series carry no endpoint labels. Connections that clients close
    themselves are not counted; a request that never fully arrived is not an invocation.
    """

    __slots__ = ("closed", "limit", "open")

    def __init__(self) -> None:
        self.open = 0
        self.limit = 0
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)


class MetricsHub:
    """Every endpoint instance of the process in one exposition (``/metrics``).

    Instances come and go with the control plane; their series share families and
    differ by the ``EndpointName``, ``VariantName`` and ``Instance`` labels.
    """

    def __init__(self) -> None:
        self.members: list[Metrics] = []
        self.connections = ConnectionCounts()
        """The server's connections (kept by :mod:`modelyard.server.connections`)."""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HubCollector(self))
        ProcessCollector(registry=self.registry)

    def add(self, metrics: Metrics) -> None:
        """Expose ``metrics``."""
        self.members.append(metrics)

    def remove(self, metrics: Metrics) -> None:
        """Stop exposing ``metrics`` (a deleted endpoint)."""
        if metrics in self.members:
            self.members.remove(metrics)

    def render(self) -> bytes:
        """The Prometheus text exposition of every member."""
        return generate_latest(self.registry)


class _HubCollector(Collector):
    def __init__(self, hub: MetricsHub) -> None:
        self._hub = hub

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for member in list(self._hub.members):
            for family in _Collector(member).collect():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        yield from merged.values()
        counts = self._hub.connections
        for name, doc, value in (
            ("Connections", "Client connections open.", counts.open),
            ("ConnectionLimit", "Client connections the server keeps open at most.", counts.limit),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        closed = CounterMetricFamily(
            "ConnectionsClosed", "Client connections the server closed, by reason.", labels=("Reason",)
        )
        for reason, value in counts.closed.items():
            closed.add_metric([reason], value)
        yield closed


class _Collector(Collector):
    """Builds the Prometheus families from :class:`Metrics` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        labels = list(m.labels)
        histograms = (
            ("ModelLoadingWaitTime", "Seconds a request waited for its model to download and load.", m.loading_wait),
            ("ModelDownloadingTime", "Seconds to download and unpack an artifact from the store.", m.downloading),
            ("ModelLoadingTime", "Seconds to load a model into memory.", m.loading),
            ("ModelUnloadingTime", "Seconds to unload a model.", m.unloading),
            ("ModelLatency", "Seconds the model took to answer (decode, predict, encode).", m.model_latency),
            ("OverheadLatency", "Seconds of an answered request spent outside the model.", m.overhead_latency),
        )
        for name, doc, histogram in histograms:
            family = HistogramMetricFamily(name, doc, labels=LABELS)
            family.add_metric(labels, histogram.cumulative(), sum_value=histogram.total)
            yield family
        counters = (
            ("ModelCacheHit", "Requests whose model was already in memory.", m.hits),
            ("ModelCacheMiss", "Requests whose model was not in memory.", m.misses),
            ("Invocations", "Requests to the invocation routes.", m.invocations),
            ("Invocation4XXErrors", "Invocations answered with a 4xx status.", m.errors_4xx),
            ("Invocation5XXErrors", "Invocations answered with a 5xx status.", m.errors_5xx),
            ("ModelDiskCacheHit", "Loads served from the disk cache without a download.", m.disk_hits),
            ("ModelLoads", "Models loaded into memory.", m.loads),
        )
        for name, doc, value in counters:
            counter = CounterMetricFamily(name, doc, labels=LABELS)
            counter.add_metric(labels, value)
            yield counter
        yield self._by("ModelEvictions", "Models removed from memory, by reason.", "Reason", m.evictions)
        yield self._by("ModelLoadFailures", "Loads that failed, by error code.", "ErrorCode", m.failures)
        if m.cache is not None:
            yield from self._gauges(m.cache)

    def _by(self, name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
        family = CounterMetricFamily(name, doc, labels=(*LABELS, label))
        for key, value in values.items():
            family.add_metric([*self._metrics.labels, key], value)
        return family

    def _gauges(self, cache: ModelCache) -> Iterable[Metric]:
        values: dict[str, tuple[str, Any]] = {
            "LoadedModelCount": ("Models resident in memory.", len(cache.entries())),
            "LoadingModelCount": ("Models being downloaded or loaded.", len(cache.loading())),
            "MemoryUsedBytes": ("Measured bytes of resident models plus reservations.", cache.used + cache.reserved),
            "MemoryBudgetBytes": ("Memory budget for models.", cache.budget),
            "DiskUsedBytes": ("Bytes of unpacked artifacts in the disk cache.", cache.disk.used),
            "DiskBudgetBytes": ("Byte budget of the disk cache.", cache.disk.budget),
            "DiskModelCount": ("Artifacts in the disk cache.", len(cache.disk)),
        }
        for name, (doc, value) in values.items():
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            family.add_metric(list(self._metrics.labels), value)
            yield family

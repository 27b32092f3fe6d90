"""Prometheus metrics with SageMaker's names, in the app's own registry (SPEC §5).

Times are in seconds (Prometheus' base unit; SageMaker's CloudWatch reports
microseconds or milliseconds for the same names). Series are labelled by endpoint,
variant and instance only: no label per model, so the output does not grow with
the number of models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from modelyard.cache import CacheEvents

if TYPE_CHECKING:
    from modelyard.cache import ModelCache

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("EndpointName", "VariantName", "Instance")
_BUCKETS = (
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


class _CacheCollector(Collector):
    def __init__(self, labels: tuple[str, str, str], cache: Callable[[], ModelCache | None]) -> None:
        self._labels = list(labels)
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        cache = self._cache()
        if cache is None:
            return
        values = {
            "LoadedModelCount": ("Models resident in memory.", len(cache.entries())),
            "LoadingModelCount": ("Models being downloaded or loaded.", len(cache.loading())),
            "MemoryUsedBytes": ("Measured bytes of resident models plus reservations.", cache.used + cache.reserved),
            "MemoryBudgetBytes": ("Memory budget for models.", cache.budget),
            "DiskUsedBytes": ("Bytes of unpacked artifacts in the disk cache.", cache.disk.used),
            "DiskBudgetBytes": ("Byte budget of the disk cache.", cache.disk.budget),
            "DiskModelCount": ("Artifacts in the disk cache.", len(cache.disk)),
        }
        for name, (doc, value) in values.items():
            family = GaugeMetricFamily(name, doc, labels=_LABELS)
            family.add_metric(self._labels, value)
            yield family


class Metrics(CacheEvents):
    """The endpoint's metrics; also the cache's event sink."""

    def __init__(self, endpoint: str, variant: str, instance: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # "_created" series only double the output
        self.registry = CollectorRegistry(auto_describe=True)
        labels = (endpoint, variant, instance)
        self.cache: ModelCache | None = None

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, _LABELS, buckets=_BUCKETS, registry=self.registry)

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, _LABELS + extra, registry=self.registry)

        self._wait = histogram(
            "ModelLoadingWaitTime", "Seconds a request waited for its model to download and load."
        ).labels(*labels)
        self._download = histogram(
            "ModelDownloadingTime", "Seconds to download and unpack an artifact from the store."
        ).labels(*labels)
        self._load = histogram("ModelLoadingTime", "Seconds to load a model into memory.").labels(*labels)
        self._unload = histogram("ModelUnloadingTime", "Seconds to unload a model.").labels(*labels)
        self.model_latency = histogram(
            "ModelLatency", "Seconds the model took to answer (decode, predict, encode)."
        ).labels(*labels)
        self.overhead_latency = histogram("OverheadLatency", "Seconds of a request spent outside the model.").labels(
            *labels
        )
        self._hits = counter("ModelCacheHit", "Requests whose model was already in memory.").labels(*labels)
        self._misses = counter("ModelCacheMiss", "Requests whose model had to be loaded.").labels(*labels)
        self.invocations = counter("Invocations", "Requests to the invocation routes.").labels(*labels)
        self.errors_4xx = counter("Invocation4XXErrors", "Invocations answered with a 4xx status.").labels(*labels)
        self.errors_5xx = counter("Invocation5XXErrors", "Invocations answered with a 5xx status.").labels(*labels)
        self._disk_hits = counter("ModelDiskCacheHit", "Loads served from the disk cache without a download.").labels(
            *labels
        )
        self._loads = counter("ModelLoads", "Models loaded into memory.").labels(*labels)
        evictions = counter("ModelEvictions", "Models removed from memory, by reason.", ("Reason",))
        self._evictions = {
            reason: evictions.labels(*labels, reason)
            for reason in ("capacity", "replaced", "cache_disabled", "unloaded", "invalidated", "shutdown")
        }
        failures = counter("ModelLoadFailures", "Loads that failed, by error code.", ("ErrorCode",))
        self._failures = failures
        self._labels = labels
        self.registry.register(_CacheCollector(labels, lambda: self.cache))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def count_status(self, status: int) -> None:
        """Count one invocation and its error class."""
        self.invocations.inc()
        if status >= 500:
            self.errors_5xx.inc()
        elif status >= 400:
            self.errors_4xx.inc()

    def hit(self) -> None:
        self._hits.inc()

    def miss(self) -> None:
        self._misses.inc()

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def downloaded(self, seconds: float, *, from_disk: bool) -> None:
        if from_disk:
            self._disk_hits.inc()
        else:
            self._download.observe(seconds)

    def loaded(self, seconds: float) -> None:
        self._loads.inc()
        self._load.observe(seconds)

    def unloaded(self, seconds: float) -> None:
        self._unload.observe(seconds)

    def evicted(self, reason: str) -> None:
        child = self._evictions.get(reason)
        if child is not None:
            child.inc()

    def load_failed(self, error: BaseException) -> None:
        code = getattr(error, "code", "InternalFailure")
        self._failures.labels(*self._labels, code).inc()

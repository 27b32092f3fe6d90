"""Metrics against known traffic, driven in process through the raw ASGI app (no sockets)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from obstore.store import MemoryStore
from prometheus_client.parser import text_string_to_metric_families

from modelyard.artifacts import DiskCache
from modelyard.cache import ModelCache
from modelyard.endpoint import Endpoint
from modelyard.errors import ArtifactNotFound
from modelyard.metrics import BUCKETS, Histogram, Metrics
from modelyard.server.app import create_app
from modelyard.settings import Settings
from modelyard.store import ObjectInfo, Store
from tests.fixtures import DummyHandler, dummy_artifact, dummy_loader, dummy_measure

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[1]
FIXED_LABELS = {"EndpointName", "VariantName", "Instance"}
FAMILIES = {
    "ModelLoadingWaitTime",
    "ModelDownloadingTime",
    "ModelLoadingTime",
    "ModelUnloadingTime",
    "ModelLatency",
    "OverheadLatency",
    "ModelCacheHit",
    "ModelCacheMiss",
    "Invocations",
    "Invocation4XXErrors",
    "Invocation5XXErrors",
    "ModelDiskCacheHit",
    "ModelLoads",
    "ModelEvictions",
    "ModelLoadFailures",
    "LoadedModelCount",
    "LoadingModelCount",
    "MemoryUsedBytes",
    "MemoryBudgetBytes",
    "DiskUsedBytes",
    "DiskBudgetBytes",
    "DiskModelCount",
}


class SparseStore(Store):
    """A memory store that says "not found" without a trip through obstore, for 100,000 misses."""

    def __init__(self) -> None:
        super().__init__("memory://metrics-test", MemoryStore())
        self.keys: set[str] = set()

    async def put(self, key: str, data: bytes) -> ObjectInfo:
        self.keys.add(key)
        return await super().put(key, data)

    async def head(self, key: str) -> ObjectInfo:
        if key not in self.keys:
            raise ArtifactNotFound(f"Could not find model data at '{key}'.")
        return await super().head(key)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not any(k.startswith(prefix) for k in self.keys):
            return []
        return await super().list(prefix)


class Served:
    """An endpoint over dummy models and its ASGI app, called without a server."""

    def __init__(self, tmp_path: Path, budget: int) -> None:
        self.store = SparseStore()
        settings = Settings.load(store="memory://metrics-test", disk_cache=tmp_path / "disk", log_level="warning")
        cache = ModelCache(
            self.store,
            DiskCache(tmp_path / "disk", 10**9, max_unpacked=10**8),
            dummy_loader(DummyHandler()),
            budget=budget,
            measure=dummy_measure,
        )
        self.endpoint = Endpoint(settings, self.store, cache=cache)
        cache.events = self.endpoint.metrics
        self.app = create_app(self.endpoint)

    async def invoke(self, target: str, body: bytes = b"1,2,3") -> tuple[int, dict[str, str], bytes]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/endpoints/modelyard/invocations",
            "headers": [(b"content-type", b"text/csv"), (b"x-amzn-sagemaker-target-model", target.encode())],
        }
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        # in a task of its own, as an ASGI server runs each request
        await asyncio.get_running_loop().create_task(self.app(scope, receive, send))
        headers = {k.decode().lower(): v.decode() for k, v in sent[0]["headers"]}
        return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])

    def samples(self) -> dict[str, float]:
        """Every sample of the exposition, keyed by name and non-fixed labels."""
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(self.endpoint.metrics.render().decode()):
            for sample in family.samples:
                extra = "".join(f"[{k}={v}]" for k, v in sorted(sample.labels.items()) if k not in FIXED_LABELS)
                out[sample.name + extra] = sample.value
        return out


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    served = Served(tmp_path, budget=4500)
    for i in range(6):
        await served.store.put(f"m{i}.dummy.json", dummy_artifact(size=1000))
    yield served
    await served.endpoint.close()


def test_histogram_buckets_count_values_up_to_their_bound() -> None:
    histogram = Histogram()
    for seconds in (0.0001, 0.0001001, 0.06, 60.0, 61.0):
        histogram.observe(seconds)
    cumulative = dict(histogram.cumulative())
    assert cumulative["0.0001"] == 1
    assert cumulative["0.00025"] == 2
    assert cumulative["0.1"] == 3
    assert cumulative["60.0"] == 4
    assert cumulative["+Inf"] == histogram.count == 5
    assert histogram.total == pytest.approx(121.0602001)
    assert BUCKETS[0] == 0.0001
    assert BUCKETS[-1] == 60.0


def test_exposition_has_every_family_and_only_fixed_labels(tmp_path: Path) -> None:
    served = Served(tmp_path, budget=10_000)
    families = {f.name: f for f in text_string_to_metric_families(served.endpoint.metrics.render().decode())}
    assert set(families) >= FAMILIES
    assert {name for name in families if not name.startswith("process_")} == FAMILIES
    for name in FAMILIES:
        for sample in families[name].samples:
            assert set(sample.labels) - FIXED_LABELS <= {"le", "Reason", "ErrorCode"}, sample
            assert {k: sample.labels[k] for k in FIXED_LABELS} == {
                "EndpointName": "modelyard",
                "VariantName": "AllTraffic",
                "Instance": "0",
            }
    assert families["ModelLatency"].type == "histogram"
    assert families["ModelCacheHit"].type == "counter"
    assert families["LoadedModelCount"].type == "gauge"


async def test_cold_and_warm_requests_are_counted_exactly(served: Served) -> None:
    cold, warm = 4, 5
    for i in range(cold):
        for n in range(1 + warm):
            status, headers, _ = await served.invoke(f"m{i}.dummy.json")
            assert status == 200
            assert headers["x-modelyard-cache"] == ("miss" if n == 0 else "hit")
    s = served.samples()
    assert s["ModelCacheHit_total"] == cold * warm
    assert s["ModelCacheMiss_total"] == cold
    assert s["ModelLoads_total"] == cold
    assert s["LoadedModelCount"] == cold
    assert s["Invocations_total"] == cold * (1 + warm)
    assert s["ModelLoadingWaitTime_count"] == cold
    assert s["ModelDownloadingTime_count"] == cold
    assert s["ModelLoadingTime_count"] == cold
    assert s["ModelLatency_count"] == s["OverheadLatency_count"] == cold * (1 + warm)
    assert s["MemoryUsedBytes"] == cold * 1000
    assert s["MemoryBudgetBytes"] == 4500
    assert s["Invocation4XXErrors_total"] == s["Invocation5XXErrors_total"] == 0
    stats = served.endpoint.metrics.models
    cache = served.endpoint.cache
    for i in range(cold):
        model = stats.model(f"m{i}.dummy.json", cache)
        assert model is not None
        assert (model["invocations"], model["loads"], model["state"]) == (1 + warm, 1, "memory")

    # a fifth model needs room: one capacity eviction, still four resident
    assert (await served.invoke("m4.dummy.json"))[0] == 200
    s = served.samples()
    assert s["ModelEvictions_total[Reason=capacity]"] == 1
    assert s["LoadedModelCount"] == cold
    assert s["ModelUnloadingTime_count"] == 1
    assert s["ModelCacheMiss_total"] == cold + 1
    evicted = [m for m in stats.query(cache, state="disk")[1]]
    assert len(evicted) == 1
    assert evicted[0]["evictions"] == 1

    # coming back from the disk cache: a miss, a load, no download
    assert (await served.invoke(evicted[0]["target"]))[0] == 200
    s = served.samples()
    assert s["ModelDiskCacheHit_total"] == 1
    assert s["ModelDownloadingTime_count"] == cold + 1
    assert s["ModelLoads_total"] == cold + 2


async def test_errors_are_counted_by_class_and_by_model(served: Served) -> None:
    assert (await served.invoke("m0.dummy.json"))[0] == 200
    status, headers, body = await served.invoke("m0.dummy.json", b"1,abc,3")
    assert status == 424
    model_error_id = headers["x-amzn-requestid"]
    status, headers, body = await served.invoke("missing.tar.gz")
    assert status == 400
    assert json.loads(body)["__type"] == "ValidationError"
    s = served.samples()
    assert s["Invocations_total"] == 3
    assert s["Invocation4XXErrors_total"] == 2
    assert s["ModelLoadFailures_total[ErrorCode=ValidationError]"] == 1
    metrics = served.endpoint.metrics
    model = metrics.models.model("m0.dummy.json", served.endpoint.cache)
    assert model is not None
    assert (model["invocations"], model["errors"]) == (2, 1)
    assert metrics.models.untracked == 1
    latest, previous = list(metrics.recent_errors)[-1], list(metrics.recent_errors)[-2]
    assert latest[1:5] == (headers["x-amzn-requestid"], "missing.tar.gz", 400, "ValidationError")
    assert previous[1:5] == (model_error_id, "m0.dummy.json", 424, "ModelError")


async def test_100000_unknown_targets_do_not_grow_the_output(served: Served) -> None:
    assert (await served.invoke("m0.dummy.json"))[0] == 200
    assert (await served.invoke("warm-up-miss.tar.gz"))[0] == 400  # creates the failure series
    before = served.endpoint.metrics.render().decode()
    before_series = set(served.samples())
    started = time.perf_counter()
    for i in range(100_000):
        status, _, _ = await served.invoke(f"nobody/{i:06d}.tar.gz")
        assert status == 400
    elapsed = time.perf_counter() - started
    after = served.endpoint.metrics.render().decode()
    assert set(served.samples()) == before_series
    assert after.count("\n") == before.count("\n")
    assert len(after) - len(before) < 200  # the same lines; only numbers got longer
    s = served.samples()
    assert s["Invocation4XXErrors_total"] == 100_001
    assert s["ModelLoadFailures_total[ErrorCode=ValidationError]"] == 100_001
    metrics = served.endpoint.metrics
    assert len(metrics.models) == 1
    assert metrics.models.untracked == 100_001
    assert len(metrics.recent_errors) == 50
    print(f"100,000 unknown targets in {elapsed:.1f} s")


def test_every_metric_is_documented() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in FAMILIES:
        assert re.search(rf"`{name}(_total)?", docs), name
        assert name in readme, name
    for reason in Metrics("e", "v", "i").evictions:
        assert f"`{reason}`" in docs, reason

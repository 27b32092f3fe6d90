from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from modelyard.entries import Entry
from modelyard.server.run import BackgroundServer
from modelyard.stats import BUCKETS, SORT_KEYS, ModelStats, bucket_value, latency_bucket, percentiles
from tests.conftest import runtime_client
from tests.fixtures import ROW, xgb_artifact


class Disk:
    def __init__(self) -> None:
        self.keys: set[tuple[str, str]] = set()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.keys


class Cache:
    """The three things the statistics read from a ModelCache."""

    def __init__(self) -> None:
        self.disk = Disk()
        self.resident: set[str] = set()
        self.loads: list[str] = []

    def get(self, target: str) -> object | None:
        return object() if target in self.resident else None

    def loading(self) -> list[str]:
        return list(self.loads)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def entry(target: str, version: str = "v1", size: int = 1000, disk_size: int = 500) -> Entry:
    return Entry(target, version, None, size, disk_size, 0.002, 0.003, 0.0, 0.0)  # type: ignore[arg-type]


def test_latency_buckets_are_log_spaced_and_cover_15_us_to_40_s() -> None:
    assert latency_bucket(0.0) == 0
    assert latency_bucket(2.0**-16 * 0.99) == 0
    assert latency_bucket(2.0**-16) == 1
    assert latency_bucket(1e9) == BUCKETS - 1
    previous = 0
    for exponent in np.linspace(-16, 5.3, 500):
        index = latency_bucket(2.0**exponent)
        assert previous <= index <= previous + 1
        previous = index
    # every value sits within a bucket whose middle is at most 12.3 % away (3 buckets per octave)
    for seconds in np.geomspace(2e-5, 30, 2000):
        assert abs(bucket_value(latency_bucket(float(seconds))) / seconds - 1) < 2 ** (1 / 6) - 1 + 1e-9


def test_percentiles_of_known_latencies() -> None:
    counts = [0] * BUCKETS
    values = [0.0001] * 50 + [0.001] * 40 + [0.01] * 9 + [1.0]
    for v in values:
        counts[latency_bucket(v)] += 1
    p50, p90, p99 = percentiles(counts)
    assert p50 == pytest.approx(0.0001, rel=0.13)
    assert p90 == pytest.approx(0.001, rel=0.13)
    assert p99 == pytest.approx(0.01, rel=0.13)
    assert percentiles(counts, [1.0]) == [pytest.approx(1.0, rel=0.13)]
    assert percentiles([0] * BUCKETS) == [None, None, None]


def test_a_model_is_tracked_from_its_first_load_and_not_found_targets_never_are() -> None:
    clock = Clock()
    stats = ModelStats(clock=clock)
    cache = Cache()
    stats.request("Houston_TX.tar.gz", 0.001)  # before any load: not tracked
    stats.error("nope.tar.gz")
    stats.failed("nope.tar.gz", "ValidationError", "not found", exists=False)
    assert len(stats) == 0
    assert stats.untracked == 2
    stats.loaded(entry("Houston_TX.tar.gz", size=12_000, disk_size=11_000))
    cache.resident.add("Houston_TX.tar.gz")
    for _ in range(9):
        stats.request("Houston_TX.tar.gz", 0.0002)
    clock.now += 5
    stats.request("Houston_TX.tar.gz", 0.002)
    stats.error("Houston_TX.tar.gz")
    doc = stats.model("Houston_TX.tar.gz", cache)
    assert doc is not None
    assert doc["state"] == "memory"
    assert doc["version"] == "v1"
    assert (doc["memoryBytes"], doc["diskBytes"]) == (12_000, 11_000)
    assert (doc["invocations"], doc["errors"], doc["loads"]) == (11, 1, 1)
    assert (doc["downloadSeconds"], doc["loadSeconds"]) == (0.002, 0.003)
    assert doc["lastUsed"] == clock.now
    assert doc["latency"]["p50"] == pytest.approx(0.0002, rel=0.13)
    assert doc["latency"]["p99"] == pytest.approx(0.002, rel=0.13)
    assert stats.model("nope.tar.gz", cache) is None


def test_states_follow_the_cache_and_failures() -> None:
    stats = ModelStats()
    cache = Cache()
    stats.loaded(entry("a"))
    assert stats.model("a", cache)["state"] == "store"  # type: ignore[index]
    cache.disk.keys.add(("a", "v1"))
    assert stats.model("a", cache)["state"] == "disk"  # type: ignore[index]
    cache.loads.append("a")
    assert stats.model("a", cache)["state"] == "loading"  # type: ignore[index]
    cache.resident.add("a")
    assert stats.model("a", cache)["state"] == "memory"  # type: ignore[index]
    stats.evicted(entry("a"))
    cache.resident.clear()
    cache.loads.clear()
    stats.failed("a", "ValidationError", "corrupt archive")
    doc = stats.model("a", cache)
    assert doc is not None
    assert (doc["state"], doc["failures"], doc["evictions"]) == ("failed", 1, 1)
    assert doc["lastError"] == "ValidationError: corrupt archive"
    stats.failed("b", "ValidationError", "no model file")  # an artifact that never loaded is tracked too
    assert stats.model("b", cache)["state"] == "failed"  # type: ignore[index]
    stats.loaded(entry("a", "v2"))
    doc = stats.model("a", cache)
    assert doc is not None
    assert (doc["state"], doc["lastError"], doc["loads"], doc["version"]) == ("store", None, 2, "v2")


def test_a_full_latency_bucket_is_halved_instead_of_overflowing() -> None:
    stats = ModelStats()
    stats.loaded(entry("a"))
    bucket = latency_bucket(0.001)
    stats._latency[bucket] = 2**32 - 1
    stats._latency[bucket + 1] = 10
    stats.request("a", 0.001)
    assert stats._latency[bucket] == 2**31
    assert stats._latency[bucket + 1] == 5


def test_max_models_bounds_the_table() -> None:
    stats = ModelStats(max_models=3)
    for name in "abcde":
        stats.loaded(entry(name))
        stats.request(name, 0.001)
    assert len(stats) == 3
    assert stats.untracked == 2


@pytest.fixture(scope="module")
def many() -> tuple[ModelStats, Cache, dict[str, Any]]:
    """100,000 models with known invocations, sizes and latencies."""
    rng = np.random.default_rng(7)
    stats = ModelStats()
    cache = Cache()
    n = 100_000
    invocations = rng.integers(0, 5, size=n)
    latency = rng.choice([0.0001, 0.001, 0.01], size=n)
    sizes = rng.integers(1000, 100_000, size=n)
    for i in range(n):
        target = f"city-{i:06d}.tar.gz"
        stats.loaded(entry(target, size=int(sizes[i])))
        for _ in range(int(invocations[i])):
            stats.request(target, float(latency[i]))
        if i % 10 == 0:
            cache.resident.add(target)
    return stats, cache, {"invocations": invocations, "latency": latency, "sizes": sizes}


def test_sorting_and_paging_100_000_models(many: tuple[ModelStats, Cache, dict[str, Any]]) -> None:
    stats, cache, known = many
    started = time.perf_counter()
    total, page = stats.query(cache, sort="invocations", descending=True, offset=0, limit=100)
    elapsed = time.perf_counter() - started
    assert total == 100_000
    assert len(page) == 100
    assert all(m["invocations"] == known["invocations"].max() for m in page)
    # ties keep first-seen order, so pages follow each other exactly
    expected = sorted(range(100_000), key=lambda i: -int(known["invocations"][i]))
    _, second = stats.query(cache, sort="invocations", descending=True, offset=100, limit=100)
    assert [m["target"] for m in second] == [f"city-{i:06d}.tar.gz" for i in expected[100:200]]
    assert elapsed < 2.0  # milliseconds in practice; generous for a loaded machine

    _, smallest = stats.query(cache, sort="memoryBytes", descending=False, limit=5)
    assert [m["memoryBytes"] for m in smallest] == sorted(int(s) for s in known["sizes"])[:5]

    _, slowest = stats.query(cache, sort="p99", descending=True, limit=1000)
    assert all(m["latency"]["p99"] == pytest.approx(0.01, rel=0.13) for m in slowest)
    _, no_traffic_last = stats.query(cache, sort="p50", descending=True, offset=99_990, limit=10)
    assert all(m["latency"]["p50"] is None for m in no_traffic_last)

    _, by_name = stats.query(cache, sort="target", descending=True, limit=3)
    assert [m["target"] for m in by_name] == ["city-099999.tar.gz", "city-099998.tar.gz", "city-099997.tar.gz"]


def test_search_and_state_filters(many: tuple[ModelStats, Cache, dict[str, Any]]) -> None:
    stats, cache, _ = many
    total, page = stats.query(cache, search="CITY-0999", sort="target", descending=False, limit=1000)
    assert total == 100
    assert page[0]["target"] == "city-099900.tar.gz"
    total, page = stats.query(cache, state="memory", limit=10)
    assert total == 10_000
    assert all(m["state"] == "memory" for m in page)
    total, page = stats.query(cache, state="failed")
    assert (total, page) == (0, [])
    total, page = stats.query(cache, sort="state", descending=False, limit=1)
    assert page[0]["state"] == "memory"


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_every_sort_key_works(many: tuple[ModelStats, Cache, dict[str, Any]], sort: str) -> None:
    stats, cache, _ = many
    total, page = stats.query(cache, sort=sort, search="city-00001", limit=20)
    assert total == 10
    assert len(page) == 10


def test_memory_per_model_is_bounded(many: tuple[ModelStats, Cache, dict[str, Any]]) -> None:
    stats, _, _ = many
    columns = [v for v in vars(stats).values() if hasattr(v, "buffer_info")]
    per_model = sum(c.itemsize * len(c) for c in columns) / len(stats)
    assert per_model == BUCKETS * 4 + 11 * 8 + 1
    assert math.isclose(per_model, 353, abs_tol=1)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_stats_api_over_http(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (store_dir / "Chicago_IL.tar.gz").write_bytes(xgb_artifact(1))
    (store_dir / "corrupt.tar.gz").write_bytes(b"\x1f\x8b\x08\x00this is not gzip data")
    server = serve(store_dir)
    client = runtime_client(server.url)
    request_ids: dict[str, str] = {}
    for target in ["Houston_TX.tar.gz"] * 3 + ["Chicago_IL.tar.gz", "corrupt.tar.gz", "missing.tar.gz"]:
        try:
            client.invoke_endpoint(EndpointName="modelyard", TargetModel=target, ContentType="text/csv", Body=ROW)
        except ClientError as failure:
            request_ids[target] = failure.response["ResponseMetadata"]["RequestId"]

    status, page = _get(f"{server.url}/stats/models")
    assert status == 200
    assert (page["total"], page["sort"], page["order"], page["offset"], page["limit"]) == (
        3,
        "invocations",
        "desc",
        0,
        100,
    )
    assert [(m["target"], m["invocations"], m["errors"], m["state"]) for m in page["models"]] == [
        ("Houston_TX.tar.gz", 3, 0, "memory"),
        ("Chicago_IL.tar.gz", 1, 0, "memory"),
        ("corrupt.tar.gz", 1, 1, "failed"),
    ]
    houston = page["models"][0]
    assert houston["memoryBytes"] > 0
    assert houston["diskBytes"] > 0
    assert houston["loads"] == 1
    assert houston["downloadSeconds"] > 0
    assert houston["loadSeconds"] > 0
    assert 0 < houston["latency"]["p50"] <= houston["latency"]["p99"]
    assert houston["lastUsed"] == pytest.approx(time.time(), abs=60)
    assert page["models"][2]["lastError"].startswith("ValidationError: ")

    assert _get(f"{server.url}/stats/models?q=HOU")[1]["total"] == 1
    assert [m["target"] for m in _get(f"{server.url}/stats/models?state=failed")[1]["models"]] == ["corrupt.tar.gz"]
    by_name = _get(f"{server.url}/stats/models?sort=target&order=asc&offset=1&limit=1")[1]
    assert (by_name["total"], [m["target"] for m in by_name["models"]]) == (3, ["Houston_TX.tar.gz"])
    for query in ("sort=bogus", "order=up", "limit=5000", "offset=-1", "limit=x", "state=gone"):
        status, error = _get(f"{server.url}/stats/models?{query}")
        assert (status, error["__type"]) == (400, "ValidationError"), query

    status, one = _get(f"{server.url}/stats/models/Houston_TX.tar.gz")
    assert (status, one["target"], one["invocations"]) == (200, "Houston_TX.tar.gz", 3)
    status, error = _get(f"{server.url}/stats/models/missing.tar.gz")
    assert (status, error["__type"]) == (404, "ResourceNotFound")

    status, summary = _get(f"{server.url}/stats")
    assert status == 200
    assert (summary["invocations"], summary["invocation4XXErrors"], summary["invocation5XXErrors"]) == (6, 2, 0)
    assert (summary["cacheHits"], summary["cacheMisses"]) == (2, 4)
    assert summary["cacheHitRatio"] == pytest.approx(2 / 6)
    assert (summary["loadedModels"], summary["trackedModels"], summary["untrackedRequests"]) == (2, 3, 1)
    assert summary["loadFailures"] == {"ValidationError": 2}
    assert summary["memoryUsedBytes"] > 0
    assert summary["memoryBudgetBytes"] == 2 * 1024**3
    assert [(e["target"], e["requestId"]) for e in summary["recentErrors"]] == [
        ("missing.tar.gz", request_ids["missing.tar.gz"]),
        ("corrupt.tar.gz", request_ids["corrupt.tar.gz"]),
    ]

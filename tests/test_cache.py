from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from obstore.store import MemoryStore

from modelyard.artifacts import DiskCache
from modelyard.cache import ModelCache
from modelyard.entries import CacheEvents
from modelyard.errors import ArtifactInvalid, ArtifactNotFound, ModelNotReady, ModelTooLarge, ServiceUnavailable
from modelyard.policy import LRU
from modelyard.store import Store
from tests.fixtures import DummyHandler, dummy_artifact, dummy_loader, dummy_measure, windowed_measure

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(CacheEvents):
    """CacheEvents that counts what happened."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.reasons: list[str] = []

    def _add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def hit(self) -> None:
        self._add("hit")

    def miss(self) -> None:
        self._add("miss")

    def waited(self, seconds: float) -> None:
        self._add("waited")

    def downloaded(self, seconds: float, *, from_disk: bool) -> None:
        self._add("disk" if from_disk else "download")

    def loaded(self, seconds: float) -> None:
        self._add("loaded")

    def unloaded(self, seconds: float) -> None:
        self._add("unloaded")

    def evicted(self, reason: str) -> None:
        self.reasons.append(reason)

    def load_failed(self, error: BaseException) -> None:
        self._add("failed")


class Harness:
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.store = Store("memory://cache-test", MemoryStore())
        self.handler = DummyHandler()
        self.events = Recorder()
        self.clock = Clock()
        self.cache = ModelCache(
            self.store,
            DiskCache(tmp_path / "disk", 10**9, max_unpacked=10**8),
            dummy_loader(self.handler),
            events=self.events,
            clock=self.clock,
            **{"budget": 10_000, "measure": dummy_measure, **options},
        )

    async def put(self, name: str, **spec: Any) -> None:
        await self.store.put(name, dummy_artifact(**spec))

    async def call(self, target: str) -> Any:
        async with self.cache.use(target) as entry:
            return entry.model


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_concurrent_requests_for_a_cold_model_share_one_load(harness: Harness) -> None:
    await harness.put("m.dummy.json", delay=0.2)
    models = await asyncio.gather(*(harness.call("m.dummy.json") for _ in range(100)))
    assert harness.handler.loads == 1
    assert harness.events.counts["download"] == 1
    assert len({id(m) for m in models}) == 1
    assert harness.events.counts["miss"] == 100


async def test_hit_after_load(harness: Harness) -> None:
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    await harness.call("m.dummy.json")
    assert harness.events.counts == {"miss": 1, "download": 1, "loaded": 1, "waited": 1, "hit": 1}


async def test_budget_is_never_exceeded(tmp_path: Path) -> None:
    harness = Harness(tmp_path, budget=50 * 1000, max_concurrent_loads=4)
    for i in range(300):
        await harness.put(f"m{i}.dummy.json", size=1000)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, harness.cache.used + harness.cache.reserved)
            await asyncio.sleep(0)

    watcher = asyncio.get_running_loop().create_task(watch())
    for start in range(0, 300, 20):
        await asyncio.gather(*(harness.call(f"m{i}.dummy.json") for i in range(start, start + 20)))
    watcher.cancel()
    assert peak <= 50 * 1000
    assert len(harness.cache.entries()) == 50
    assert harness.events.reasons.count("capacity") == 250
    assert sum(m.unloaded for m in harness.handler.models) == 250


async def test_different_models_load_in_parallel_up_to_the_bound(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_concurrent_loads=4, load_threads=4)
    for i in range(8):
        await harness.put(f"m{i}.dummy.json", delay=0.3)
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(harness.call(f"m{i}.dummy.json") for i in range(8)))
    elapsed = asyncio.get_running_loop().time() - started
    assert harness.handler.loads == 8
    assert elapsed < 8 * 0.3  # 4 at a time: about 0.6 s


async def test_failed_load_leaves_nothing_and_is_retried(harness: Harness) -> None:
    await harness.put("m.dummy.json", fail="broken model")
    with pytest.raises(ArtifactInvalid, match="broken model"):
        await harness.call("m.dummy.json")
    assert harness.cache.entries() == []
    assert harness.cache.used == harness.cache.reserved == 0
    assert harness.events.counts["failed"] == 1
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    assert harness.handler.loads == 2


async def test_cancelled_request_does_not_cancel_the_shared_load(harness: Harness) -> None:
    await harness.put("m.dummy.json", delay=0.3)
    first = asyncio.get_running_loop().create_task(harness.call("m.dummy.json"))
    await asyncio.sleep(0.05)
    first.cancel()
    model = await harness.call("m.dummy.json")
    assert model is not None
    assert harness.handler.loads == 1


async def test_wait_deadline_gives_model_not_ready_and_load_goes_on(tmp_path: Path) -> None:
    harness = Harness(tmp_path, wait_timeout=0.05)
    await harness.put("m.dummy.json", delay=0.3)
    with pytest.raises(ModelNotReady):
        await harness.call("m.dummy.json")
    await asyncio.sleep(0.4)
    await harness.call("m.dummy.json")
    assert harness.handler.loads == 1
    assert harness.events.counts["hit"] == 1


async def test_model_larger_than_budget_fails_fast_without_flushing(harness: Harness) -> None:
    for i in range(4):
        await harness.put(f"m{i}.dummy.json", size=2000)
        await harness.call(f"m{i}.dummy.json")
    await harness.put("huge.dummy.json", size=20_000)
    with pytest.raises(ModelTooLarge):
        await harness.call("huge.dummy.json")
    assert len(harness.cache.entries()) == 4
    assert harness.events.reasons == []
    with pytest.raises(ModelTooLarge):  # the measured size is remembered: no second load
        await harness.call("huge.dummy.json")
    assert harness.handler.loads == 5


async def test_pinned_models_are_not_evicted(harness: Harness) -> None:
    await harness.put("pinned.dummy.json", size=4000)
    await harness.cache.pin("pinned.dummy.json")
    for i in range(10):
        await harness.put(f"m{i}.dummy.json", size=3000)
        await harness.call(f"m{i}.dummy.json")
    assert harness.cache.get("pinned.dummy.json") is not None
    assert harness.cache.unpin("pinned.dummy.json")


async def test_no_room_when_everything_is_pinned(harness: Harness) -> None:
    await harness.put("a.dummy.json", size=6000)
    await harness.put("b.dummy.json", size=6000)
    await harness.cache.pin("a.dummy.json")
    with pytest.raises(ServiceUnavailable):
        await harness.call("b.dummy.json")
    assert harness.cache.used == 6000


async def test_model_in_use_is_unloaded_only_after_its_request(tmp_path: Path) -> None:
    harness = Harness(tmp_path, budget=1000)
    await harness.put("a.dummy.json", size=600)
    await harness.put("b.dummy.json", size=600)
    entry = await harness.cache.acquire("a.dummy.json")
    with pytest.raises(ServiceUnavailable):  # a is in use: no room for b yet
        await harness.call("b.dummy.json")
    harness.cache.release(entry)
    await harness.call("b.dummy.json")
    assert entry.model.unloaded  # type: ignore[attr-defined]


async def test_cache_disabled_unloads_after_each_call(tmp_path: Path) -> None:
    harness = Harness(tmp_path, enabled=False)
    await harness.put("m.dummy.json", delay=0.1)
    models = await asyncio.gather(*(harness.call("m.dummy.json") for _ in range(5)))
    assert harness.handler.loads == 1  # coalesced waiters share the load
    assert all(m.unloaded for m in models)
    assert harness.cache.entries() == []
    await harness.call("m.dummy.json")
    assert harness.handler.loads == 2
    assert harness.events.counts["disk"] == 1  # reloaded from disk, not downloaded


async def test_new_version_is_picked_up_without_a_failed_request(harness: Harness) -> None:
    await harness.put("m.dummy.json", value=1.0)
    assert (await harness.call("m.dummy.json")).value == 1.0
    await harness.put("m.dummy.json", value=2.0, delay=0.2)
    harness.clock.now += 1.0  # within the check interval: no check yet
    assert (await harness.call("m.dummy.json")).value == 1.0
    harness.clock.now += 10.0
    values = []
    for _ in range(40):  # old version keeps answering while the new one loads
        values.append((await harness.call("m.dummy.json")).value)
        await asyncio.sleep(0.02)
    assert values[0] == 1.0
    assert values[-1] == 2.0
    assert sorted(values) == values
    assert "replaced" in harness.events.reasons
    assert len(harness.cache.entries()) == 1


async def test_deleted_artifact_is_served_until_evicted(harness: Harness) -> None:
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    await harness.store.delete("m.dummy.json")
    harness.clock.now += 10.0
    await harness.call("m.dummy.json")
    await asyncio.sleep(0.05)
    await harness.call("m.dummy.json")
    harness.cache.invalidate("m.dummy.json")
    with pytest.raises(ArtifactNotFound):
        await harness.call("m.dummy.json")


async def test_broken_new_version_keeps_old_one_serving(harness: Harness) -> None:
    await harness.put("m.dummy.json", value=1.0)
    await harness.call("m.dummy.json")
    await harness.put("m.dummy.json", fail="bad new version")
    harness.clock.now += 10.0
    await harness.call("m.dummy.json")
    await asyncio.sleep(0.05)
    assert (await harness.call("m.dummy.json")).value == 1.0


async def test_unload_and_invalidate(harness: Harness) -> None:
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    assert harness.cache.unload("m.dummy.json")
    assert not harness.cache.unload("m.dummy.json")
    await harness.call("m.dummy.json")
    assert harness.events.counts["disk"] == 1
    harness.cache.invalidate("m.dummy.json")
    assert len(harness.cache.disk) == 0


async def test_lru_policy_can_be_chosen(tmp_path: Path) -> None:
    harness = Harness(tmp_path, budget=2000, policy=LRU())
    for name in "abc":
        await harness.put(f"{name}.dummy.json", size=1000)
    await harness.call("a.dummy.json")
    await harness.call("b.dummy.json")
    await harness.call("a.dummy.json")
    await harness.call("c.dummy.json")
    assert {e.target for e in harness.cache.entries()} == {"a.dummy.json", "c.dummy.json"}


async def test_close_unloads_everything(harness: Harness) -> None:
    await harness.put("m.dummy.json")
    model = await harness.call("m.dummy.json")
    await harness.cache.close()
    assert model.unloaded
    assert harness.cache.used == 0


async def test_unloads_wait_for_a_measurement_in_progress(tmp_path: Path) -> None:
    harness = Harness(tmp_path, budget=3000, load_threads=2, max_concurrent_loads=2, measure=windowed_measure)
    await harness.put("a.dummy.json", size=2000)
    await harness.put("b.dummy.json", size=2000, delay=0.3)
    await harness.put("c.dummy.json", size=500)
    first = await harness.call("a.dummy.json")
    slow = asyncio.get_running_loop().create_task(harness.call("b.dummy.json"))  # evicts a, then loads
    await asyncio.sleep(0.1)
    assert not first.unloaded  # evicted, but its memory is freed only after b's measurement
    await slow
    assert first.unloaded


async def test_fresh_models_awaited_by_requests_are_not_evicted(tmp_path: Path) -> None:
    harness = Harness(tmp_path, budget=3000, max_concurrent_loads=8, load_threads=4)
    for i in range(6):
        await harness.put(f"m{i}.dummy.json", size=1000, delay=0.05 * (i % 3))
    models = await asyncio.gather(*(harness.call(f"m{i % 6}.dummy.json") for i in range(24)), return_exceptions=True)
    served = [m for m in models if not isinstance(m, BaseException)]
    assert served  # some requests are served; none got a model evicted under them
    assert not any(isinstance(m, ServiceUnavailable) and "as soon as it loaded" in str(m) for m in models)
    assert harness.cache.used <= 3000


async def test_injected_cost_reaches_the_policy(tmp_path: Path) -> None:
    costs: list[tuple[str, float]] = []

    def cost(target: str, measured: float) -> float:
        costs.append((target, measured))
        return 5.0

    harness = Harness(tmp_path, cost=cost)
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    assert [t for t, _ in costs] == ["m.dummy.json"]


async def test_reload_within_the_check_interval_does_not_ask_the_store(harness: Harness) -> None:
    await harness.put("m.dummy.json")
    await harness.call("m.dummy.json")
    heads = 0
    original = harness.store.head

    async def counting_head(key: str) -> Any:
        nonlocal heads
        heads += 1
        return await original(key)

    harness.store.head = counting_head  # type: ignore[method-assign]
    harness.cache.unload("m.dummy.json")
    await harness.call("m.dummy.json")
    assert (heads, harness.events.counts["disk"]) == (0, 1)
    harness.cache.unload("m.dummy.json")
    harness.clock.now += 10.0  # past the interval: the store is asked again
    await harness.call("m.dummy.json")
    assert heads == 1


async def test_unloads_keep_up_with_sustained_concurrent_misses(tmp_path: Path) -> None:
    """Under misses that never stop (a load always waiting on the load thread), every evicted
    model is still unloaded promptly: the backlog of evicted-but-not-unloaded models stays small."""
    harness = Harness(tmp_path, budget=10 * 1000, max_concurrent_loads=4, measure=windowed_measure)
    for i in range(400):
        await harness.put(f"m{i}.dummy.json", size=1000, delay=0.002)
    backlog = 0
    done = False

    async def client(start: int) -> None:
        for i in range(start, 400, 8):
            await harness.call(f"m{i}.dummy.json")

    async def watch() -> None:
        nonlocal backlog
        while not done:
            evicted = harness.events.reasons.count("capacity")
            backlog = max(backlog, evicted - harness.events.counts.get("unloaded", 0))
            await asyncio.sleep(0.005)

    watcher = asyncio.get_running_loop().create_task(watch())
    await asyncio.gather(*(client(start) for start in range(8)))
    done = True
    await watcher
    assert harness.events.reasons.count("capacity") == 390
    assert backlog <= 16, f"{backlog} evicted models waited to be unloaded"

from __future__ import annotations

import numpy as np
import pytest

from modelyard.policy import GDSF, LRU, EvictionPolicy


def hit_ratio(
    policy: EvictionPolicy[int], trace: np.ndarray, capacity: int, sizes: dict[int, int] | None = None
) -> float:
    resident: set[int] = set()
    hits = 0
    for key in map(int, trace):
        if key in resident:
            hits += 1
            policy.touch(key)
            continue
        while len(resident) >= capacity:
            victim = policy.victim()
            assert victim is not None
            policy.remove(victim, evicted=True)
            resident.discard(victim)
        resident.add(key)
        policy.insert(key, (sizes or {}).get(key, 100_000), 0.01)
    return hits / len(trace)


def zipf_trace(models: int, requests: int, s: float = 1.0, seed: int = 1) -> np.ndarray:
    weights = 1 / np.arange(1, models + 1) ** s
    return np.random.default_rng(seed).choice(models, size=requests, p=weights / weights.sum())


def test_gdsf_beats_lru_on_zipf_traffic() -> None:
    trace = zipf_trace(1000, 60_000)
    lru, gdsf = hit_ratio(LRU(), trace, 100), hit_ratio(GDSF(), trace, 100)
    assert 0.5 < lru < gdsf
    assert gdsf - lru > 0.04


def test_gdsf_prefers_keeping_small_models_of_equal_popularity() -> None:
    policy: GDSF[str] = GDSF()
    policy.insert("big", 10_000_000, 0.01)
    policy.insert("small", 10_000, 0.01)
    assert policy.victim() == "big"


def test_gdsf_keeps_expensive_to_load_models() -> None:
    policy: GDSF[str] = GDSF()
    policy.insert("slow", 1000, 5.0)
    policy.insert("fast", 1000, 0.001)
    assert policy.victim() == "fast"


def test_gdsf_remembers_frequency_of_evicted_models() -> None:
    policy: GDSF[str] = GDSF()
    policy.insert("hot", 1000, 0.01)
    for _ in range(50):
        policy.touch("hot")
    policy.remove("hot", evicted=True)
    policy.insert("hot", 1000, 0.01)
    policy.insert("new", 1000, 0.01)
    assert policy.victim() == "new"


def test_aging_lets_formerly_hot_models_go() -> None:
    policy: GDSF[int] = GDSF()
    policy.insert(0, 1000, 0.01)
    for _ in range(20):
        policy.touch(0)
    # a long stream of new models, each used a few times, raises the inflation value
    resident = {0}
    for key in range(1, 400):
        while len(resident) >= 5:
            victim = policy.victim()
            assert victim is not None
            policy.remove(victim, evicted=True)
            resident.discard(victim)
        policy.insert(key, 1000, 0.01)
        resident.add(key)
        for _ in range(3):
            policy.touch(key)
    assert 0 not in resident


@pytest.mark.parametrize("policy", [LRU(), GDSF()], ids=["lru", "gdsf"])
def test_victim_skips_protected_keys_and_keeps_them(policy: EvictionPolicy[str]) -> None:
    for key in "abc":
        policy.insert(key, 1000, 0.01)
    policy.touch("b")
    policy.touch("c")
    assert policy.victim(lambda key: key == "a") in {"b", "c"}
    assert policy.victim(lambda key: True) is None
    assert policy.victim() == "a"
    policy.remove("a", evicted=True)
    assert len(policy) == 2
    assert policy.victim() in {"b", "c"}


def test_lru_order() -> None:
    policy: LRU[str] = LRU()
    for key in "abc":
        policy.insert(key, 1, 0.0)
    policy.touch("a")
    assert policy.victim() == "b"


def test_gdsf_heap_stays_bounded_under_many_touches() -> None:
    policy: GDSF[int] = GDSF()
    for key in range(10):
        policy.insert(key, 1000, 0.01)
    for i in range(10_000):
        policy.touch(i % 10)
    assert len(policy._heap) <= 4 * 10 + 64 + 1


def test_residency_learn_takes_the_median_of_recent_readings() -> None:
    from modelyard.policy import Residency

    residency: Residency[str] = Residency(10**9, GDSF())
    assert residency.learn("m", 4000, 60_000) == 60_000
    assert residency.learn("m", 4000, 0) == 60_000  # freed memory counted against the load
    assert residency.learn("m", 4000, 58_000) == 58_000  # median of 60k, 0, 58k
    assert residency.learn("m", 4000, 400_000) == 58_000  # memory allocated elsewhere meanwhile
    assert residency.learn("m", 4000, 61_000) == 61_000
    assert residency.known_size("m") == 61_000
    assert residency.learn("other", 40_000, 0) == 10_000  # never below a quarter of the disk size

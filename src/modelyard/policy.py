"""Eviction policies: which resident model to drop when a load needs room.

Pure bookkeeping with no I/O, so the server's cache and any offline simulation of
it (capacity planning) make the same decisions on the same trace.

:class:`GDSF` (Greedy-Dual-Size-Frequency) is the default: a model's priority is
``L + frequency × cost / size``, where cost is what reloading it would take (seconds
of download and load), size its measured bytes, and ``L`` an inflation value raised
to each evicted priority, so models that stop being used age out. Frequencies of
recently evicted models are remembered (a bounded ghost list), so a popular model
that was pushed out comes back with its history instead of as a stranger. On skewed
traffic this keeps the heavy hitters that plain LRU lets one-off requests flush out.
:class:`LRU` is the baseline.
"""

from __future__ import annotations

import heapq
import itertools
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["GDSF", "LRU", "POLICIES", "EvictionPolicy"]

K = TypeVar("K", bound=Hashable)

_MIN_COST = 1e-4  # seconds: keeps a model that loaded "instantly" comparable to others


class EvictionPolicy(ABC, Generic[K]):
    """Tracks resident keys and names the next one to evict."""

    name: str = ""

    @abstractmethod
    def insert(self, key: K, size: int, cost: float) -> None:
        """A model became resident (``size`` bytes, ``cost`` seconds to load again)."""

    @abstractmethod
    def touch(self, key: K) -> None:
        """A resident model was used."""

    @abstractmethod
    def remove(self, key: K, *, evicted: bool) -> None:
        """A model left memory; ``evicted`` when this policy chose it for room."""

    @abstractmethod
    def victim(self, skip: Callable[[K], bool] = lambda key: False) -> K | None:
        """The resident key to evict next, passing over those ``skip`` protects."""

    @abstractmethod
    def __len__(self) -> int: ...


class LRU(EvictionPolicy[K]):
    """Least recently used first."""

    name = "lru"

    def __init__(self) -> None:
        self._order: OrderedDict[K, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def insert(self, key: K, size: int, cost: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def touch(self, key: K) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def remove(self, key: K, *, evicted: bool) -> None:
        self._order.pop(key, None)

    def victim(self, skip: Callable[[K], bool] = lambda key: False) -> K | None:
        return next((key for key in self._order if not skip(key)), None)


class GDSF(EvictionPolicy[K]):
    """Greedy-Dual-Size-Frequency with aging and a ghost frequency list (module doc)."""

    name = "gdsf"

    def __init__(self, ghost_entries: int = 100_000) -> None:
        self._inflation = 0.0
        self._priority: dict[K, float] = {}
        self._frequency: dict[K, int] = {}
        self._value: dict[K, float] = {}  # cost / size
        self._ghost: OrderedDict[K, int] = OrderedDict()
        self._ghost_entries = ghost_entries
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._priority)

    def _push(self, key: K) -> None:
        priority = self._inflation + self._frequency[key] * self._value[key]
        self._priority[key] = priority
        heapq.heappush(self._heap, (priority, next(self._seq), key))
        if len(self._heap) > 4 * len(self._priority) + 64:  # drop stale heap items
            self._heap = [(p, next(self._seq), k) for k, p in self._priority.items()]
            heapq.heapify(self._heap)

    def insert(self, key: K, size: int, cost: float) -> None:
        self._frequency[key] = self._ghost.pop(key, 0) + 1
        self._value[key] = max(cost, _MIN_COST) / max(size, 1)
        self._push(key)

    def touch(self, key: K) -> None:
        if key in self._priority:
            self._frequency[key] += 1
            self._push(key)

    def remove(self, key: K, *, evicted: bool) -> None:
        priority = self._priority.pop(key, None)
        if priority is None:
            return
        if evicted:
            self._inflation = max(self._inflation, priority)
        self._ghost[key] = self._frequency.pop(key)
        self._ghost.move_to_end(key)
        del self._value[key]
        while len(self._ghost) > self._ghost_entries:
            self._ghost.popitem(last=False)

    def victim(self, skip: Callable[[K], bool] = lambda key: False) -> K | None:
        passed: list[tuple[float, int, K]] = []
        found: K | None = None
        while self._heap:
            item = heapq.heappop(self._heap)
            priority, _, key = item
            if self._priority.get(key) != priority:
                continue  # stale: the key was touched or removed since
            passed.append(item)
            if not skip(key):
                found = key
                break
        for item in passed:
            heapq.heappush(self._heap, item)
        return found


#: policies by the name used in settings (``--eviction``)
POLICIES: dict[str, Callable[[], EvictionPolicy[object]]] = {"gdsf": GDSF, "lru": LRU}

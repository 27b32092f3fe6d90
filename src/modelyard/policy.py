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

__all__ = ["GDSF", "LRU", "POLICIES", "EvictionPolicy", "Residency"]

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


class Residency(Generic[K]):
    """What is resident under a byte budget, and what to evict for room: no I/O.

    The memory cache and the capacity planner's simulator both drive one of these,
    with the same calls in the same order, so they make the same decisions:

    * a miss reserves the estimated size (:meth:`reserve`), evicting for room first;
    * once loaded, the reservation is released and the measured size admitted
      (:meth:`admit`), evicting again if the estimate was short;
    * estimates come from :meth:`estimate`: the size this key had last time, else
      its size on disk times the memory/disk ratio learnt from every load.

    The budget is never exceeded by ``used + reserved``; ``protected`` keys (pinned,
    in use) are never chosen.
    """

    def __init__(self, budget: int, policy: EvictionPolicy[K], known_sizes: int = 1_000_000) -> None:
        self.budget = budget
        self.policy = policy
        self.used = 0
        self.reserved = 0
        self.sizes: dict[K, int] = {}
        self._known: OrderedDict[K, int] = OrderedDict()
        self._readings: OrderedDict[K, tuple[int, ...]] = OrderedDict()
        self._known_limit = known_sizes
        self._ratio = 2.0  # memory bytes per disk byte

    def __contains__(self, key: object) -> bool:
        return key in self.sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def known_size(self, key: K) -> int | None:
        """The measured size of ``key`` at its last load, if any."""
        return self._known.get(key)

    def estimate(self, key: K, disk_size: int) -> int:
        """Best guess of ``key``'s size in memory before it loads."""
        known = self._known.get(key)
        return known if known is not None else int(disk_size * self._ratio)

    def learn(self, key: K, disk_size: int, measured: int) -> int:
        """Record a measured size; returns the size to account for ``key``.

        A heap measurement can come out low (memory freed elsewhere counted against
        the load) or high (memory allocated elsewhere meanwhile). So the accounted size
        is the median of the key's last three readings (the larger one while there are
        only two, to err on the safe side), and never under a quarter of its size on
        disk.
        """
        readings = (*self._readings.get(key, ()), measured)[-3:]
        self._readings[key] = readings
        self._readings.move_to_end(key)
        if len(self._readings) > self._known_limit:
            self._readings.popitem(last=False)
        typical = sorted(readings)[1] if len(readings) == 3 else max(readings)
        size = max(typical, disk_size // 4)
        self._known[key] = size
        self._known.move_to_end(key)
        if len(self._known) > self._known_limit:
            self._known.popitem(last=False)
        if disk_size:
            self._ratio = 0.8 * self._ratio + 0.2 * (size / disk_size)
        return size

    def make_room(self, need: int, protected: Callable[[K], bool] = lambda key: False) -> tuple[list[K], bool]:
        """Evict until ``need`` more bytes fit; returns the evicted keys and whether it fits."""
        victims: list[K] = []
        while self.used + self.reserved + need > self.budget:
            victim = self.policy.victim(protected)
            if victim is None:
                return victims, False
            self.remove(victim, evicted=True)
            victims.append(victim)
        return victims, True

    def reserve(self, need: int, protected: Callable[[K], bool] = lambda key: False) -> tuple[list[K], bool]:
        """Make room for a load of ``need`` bytes and hold it; see :meth:`make_room`."""
        victims, fits = self.make_room(need, protected)
        if fits:
            self.reserved += need
        return victims, fits

    def release(self, reservation: int) -> None:
        """Give back a reservation once its load finished or failed."""
        self.reserved -= reservation

    def admit(
        self, key: K, size: int, cost: float, protected: Callable[[K], bool] = lambda key: False
    ) -> tuple[list[K], bool]:
        """Make ``key`` resident with its measured ``size``; nothing changes when it does not fit."""
        victims, fits = self.make_room(size, protected)
        if fits:
            self.sizes[key] = size
            self.used += size
            self.policy.insert(key, size, cost)
        return victims, fits

    def touch(self, key: K) -> None:
        """``key`` was used."""
        self.policy.touch(key)

    def remove(self, key: K, *, evicted: bool) -> None:
        """``key`` leaves memory (``evicted`` when chosen for room)."""
        size = self.sizes.pop(key, None)
        if size is None:
            return
        self.used -= size
        self.policy.remove(key, evicted=evicted)

"""One-second samples of every endpoint instance, for the dashboard's charts.

One task samples every instance the metrics hub knows (the default endpoint's and the
control plane's), once a second, into a ring buffer per instance (15 minutes by
default): counters as differences from the previous sample, the latency histogram's
difference kept sparse, and the current levels. A view over an endpoint, a variant or
one instance sums the instances' samples of the same second, so its rates, hit ratio
and latency percentiles are those of the whole selection, not averages of averages.
An instance replaced by a redeployment continues its predecessor's buffer (same
endpoint, variant and instance id). A sample costs a few counter reads per instance,
whether anyone watches or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from modelyard.metrics import Metrics, MetricsHub
from modelyard.stats import BUCKETS, percentiles

__all__ = ["FIELDS", "Series"]

FIELDS = (
    "time",
    "loaded",
    "loading",
    "hitRatio",
    "invocations",
    "errors",
    "p50",
    "p90",
    "p99",
    "loads",
    "evictions",
    "memoryUsed",
    "memoryBudget",
)
"""One sample: unix time; models loaded and loading; hit ratio over the interval (None
without lookups); invocations, errors, loads and evictions per second; latency
percentiles of the interval's answered requests in seconds (None without any); memory
used and budget in bytes."""

Key = tuple[str, str, str]  # endpoint, variant, instance
_COUNTERS = 6  # hits, misses, invocations, errors, loads, evictions
_LEVELS = 4  # loaded, loading, memory used, memory budget


def _counters(m: Metrics) -> tuple[list[int], list[int]]:
    counts = [m.hits, m.misses, m.invocations, m.errors_4xx + m.errors_5xx, m.loads, sum(m.evictions.values())]
    return counts, list(m.models.latency)


@dataclass
class _Track:
    """One instance's samples: ``(seq, counter deltas, sparse latency deltas, levels)``."""

    metrics: Metrics
    counts: list[int]
    latency: list[int]
    samples: deque[tuple[int, tuple[int, ...], dict[int, int], tuple[int, ...]]] = field(default_factory=deque)


class Series:
    """Samples of every instance of ``hub`` (see module doc)."""

    def __init__(
        self, hub: MetricsHub, *, capacity: int = 900, interval: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.hub = hub
        self.capacity = capacity
        self.interval = interval
        self.seq = 0
        """Number of the last sample taken."""
        self._clock = clock
        self._times: deque[tuple[int, float]] = deque(maxlen=capacity)
        self._tracks: dict[Key, _Track] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        """Take one sample of every instance (and forget instances gone for the whole window)."""
        self.seq += 1
        for key in [
            k for k, t in self._tracks.items() if not t.samples or t.samples[-1][0] <= self.seq - self.capacity
        ]:
            del self._tracks[key]
        self._times.append((self.seq, round(self._clock(), 3)))
        for m in list(self.hub.members):
            counts, latency = _counters(m)
            track = self._tracks.get(m.labels)
            if track is None or track.metrics is not m:  # new, or replaced by a redeployment: no jump
                previous = track.samples if track is not None else deque(maxlen=self.capacity)
                track = self._tracks[m.labels] = _Track(m, counts, latency, previous)
            deltas = tuple(now - then for now, then in zip(counts, track.counts, strict=True))
            spread = {
                b: now - then for b, (now, then) in enumerate(zip(latency, track.latency, strict=True)) if now != then
            }
            cache = m.cache
            levels = (
                (len(cache.entries()), len(cache.loading()), cache.used + cache.reserved, cache.budget)
                if cache is not None
                else (0, 0, 0, 0)
            )
            track.samples.append((self.seq, deltas, spread, levels))
            track.counts, track.latency = counts, latency
            while track.samples and track.samples[0][0] <= self.seq - self.capacity:
                track.samples.popleft()

    def since(self, seq: int, keys: Iterable[Key]) -> dict[str, Any]:
        """Samples after number ``seq`` summed over the instances ``keys``, one list per field (uPlot's layout)."""
        tracks = [self._tracks[k] for k in keys if k in self._tracks]
        rows = []
        previous_time: float | None = None
        for number, when in self._times:
            if number <= seq:
                previous_time = when
                continue
            counts = [0] * _COUNTERS
            levels = [0] * _LEVELS
            latency = [0] * BUCKETS
            for track in tracks:
                sample = self._at(track, number)
                if sample is None:
                    continue
                for i, value in enumerate(sample[1]):
                    counts[i] += value
                for bucket, value in sample[2].items():
                    latency[bucket] += value
                for i, value in enumerate(sample[3]):
                    levels[i] += value
            elapsed = max(when - previous_time, 1e-9) if previous_time is not None else self.interval
            previous_time = when
            hits, misses = counts[0], counts[1]
            p50, p90, p99 = percentiles(latency)
            rows.append(
                (
                    when,
                    levels[0],
                    levels[1],
                    hits / (hits + misses) if hits + misses else None,
                    counts[2] / elapsed,
                    counts[3] / elapsed,
                    p50,
                    p90,
                    p99,
                    counts[4] / elapsed,
                    counts[5] / elapsed,
                    levels[2],
                    levels[3],
                )
            )
        columns = {name: [row[i] for row in rows] for i, name in enumerate(FIELDS)}
        return {"seq": self.seq, "interval": self.interval, "columns": columns}

    @staticmethod
    def _at(track: _Track, number: int) -> tuple[int, tuple[int, ...], dict[int, int], tuple[int, ...]] | None:
        samples = track.samples
        if not samples or number < samples[0][0] or number > samples[-1][0]:
            return None
        sample = samples[number - samples[0][0]] if len(samples) > number - samples[0][0] else None
        if sample is not None and sample[0] == number:
            return sample
        return next((s for s in samples if s[0] == number), None)  # a gap (the instance came late)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def start(self) -> None:
        """Sample every ``interval`` seconds on the running loop until :meth:`stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

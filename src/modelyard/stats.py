"""Per-model statistics, which SageMaker does not have: what every model did.

Prometheus series carry no model label (their number must not grow with the number
of models), so the per-model view lives here, in memory, and is served as JSON by
``GET /stats/models`` and the dashboard.

* A model is tracked from its first load, successful or not. Targets that do not
  exist in the store are never tracked: a flood of made-up names costs nothing.
* Every column is a flat array (one row per model), including a latency histogram
  of :data:`BUCKETS` log-spaced buckets: about 0.4 KiB per model, whatever its
  traffic. A request costs a dict lookup and a few array increments, with no lock
  and no allocation; everything is updated from the event loop thread.
* Queries filter, sort and page with numpy views over the columns, so sorting
  100,000 models by any column (p99 latency included) takes milliseconds.
"""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from modelyard.entries import Entry

__all__ = [
    "BUCKETS",
    "SORT_KEYS",
    "STATES",
    "CacheView",
    "ModelStats",
    "bucket_value",
    "latency_bucket",
    "percentiles",
]

BUCKETS = 66
"""Latency buckets: 0 is below 2⁻¹⁶ s (15 µs), then 3 per octave up to 40 s, the last open-ended."""
_PER_OCTAVE = 3
_FLOOR = 2.0**-16
_OFFSET = 16 * _PER_OCTAVE
_QUANTILES = (0.5, 0.9, 0.99)
STATES = ("memory", "loading", "disk", "store", "failed")
"""A model's state: resident in memory, loading, on the disk cache only, in the store only, or its last load failed."""
SORT_KEYS = (
    "target",
    "version",
    "state",
    "memoryBytes",
    "diskBytes",
    "invocations",
    "errors",
    "lastUsed",
    "loads",
    "failures",
    "evictions",
    "downloadSeconds",
    "loadSeconds",
    "loadedAt",
    "p50",
    "p90",
    "p99",
)
"""What ``GET /stats/models?sort=`` accepts."""


class _DiskView(Protocol):
    def __contains__(self, key: tuple[str, str]) -> bool: ...


class CacheView(Protocol):
    """What the statistics read from the cache to tell a model's state (a :class:`~modelyard.cache.ModelCache`)."""

    @property
    def disk(self) -> _DiskView:
        """The disk tier: holds ``(target, version)`` pairs."""

    def get(self, target: str) -> object | None:
        """The resident model serving ``target``, if any."""

    def loading(self) -> list[str]:
        """Targets whose load is under way."""


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency (``[2⁻¹⁶·2^((i-1)/3), 2⁻¹⁶·2^(i/3))`` for bucket ``i``)."""
    if seconds < _FLOOR:
        return 0
    index = int(_PER_OCTAVE * math.log2(seconds) + _OFFSET) + 1  # int() floors: the sum is >= 0
    return index if index < BUCKETS else BUCKETS - 1


def bucket_value(index: int) -> float:
    """The latency a bucket stands for: its geometric middle (its lower bound for the last one)."""
    if index <= 0:
        return _FLOOR / 2
    if index >= BUCKETS - 1:
        return float(2.0 ** ((BUCKETS - 1 - 1 - _OFFSET) / _PER_OCTAVE))
    return float(2.0 ** ((index - 0.5 - _OFFSET) / _PER_OCTAVE))


_VALUES = np.array([bucket_value(i) for i in range(BUCKETS)])


def percentiles(counts: Sequence[int], quantiles: Sequence[float] = _QUANTILES) -> list[float | None]:
    """Latency quantiles (seconds, within ±12 %) of one histogram; None when it is empty."""
    total = sum(counts)
    if total == 0:
        return [None] * len(quantiles)
    out: list[float | None] = []
    for q in quantiles:
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen >= rank:
                out.append(bucket_value(index))
                break
    return out


def _quantile_columns(matrix: np.ndarray[Any, Any], q: float) -> np.ndarray[Any, Any]:
    """One quantile per histogram row (NaN for an empty row).

    Walks the buckets with one vector per bucket: numpy's cumsum along short rows
    is several times slower for 100,000 rows.
    """
    by_bucket = np.ascontiguousarray(matrix.T)
    total = by_bucket.sum(axis=0, dtype=np.int64)
    rank = np.maximum(np.ceil(q * total), 1).astype(np.int64)
    seen = np.zeros(matrix.shape[0], dtype=np.int64)
    index = np.zeros(matrix.shape[0], dtype=np.int64)  # buckets wholly below the rank
    for counts in by_bucket[:-1]:
        seen += counts
        index += seen < rank
    return np.where(total > 0, _VALUES[index], np.nan)


class ModelStats:
    """Statistics of every model tracked by one endpoint (see module doc).

    ``max_models`` bounds the table: models seen after it is full are counted in
    :attr:`untracked` only.
    """

    def __init__(self, *, max_models: int = 1_000_000, clock: Callable[[], float] = time.time) -> None:
        self.max_models = max_models
        self.untracked = 0
        """Requests whose target is not tracked (not found in the store, invalid, or over ``max_models``)."""
        self.latency = [0] * BUCKETS
        """Latency histogram of every answered request, tracked or not (see :func:`latency_bucket`)."""
        self._clock = clock
        self._rows: dict[str, int] = {}
        self._targets: list[str] = []
        self._versions: list[str] = []
        self._last_error: dict[int, str] = {}
        self._invocations = array("Q")
        self._errors = array("Q")
        self._last_used = array("d")
        self._loads = array("Q")
        self._failures = array("Q")
        self._evictions = array("Q")
        self._memory = array("Q")
        self._disk = array("Q")
        self._download = array("d")
        self._load = array("d")
        self._loaded_at = array("d")
        self._failed = array("B")
        self._latency = array("I")  # BUCKETS per row
        self._zeros = bytes(BUCKETS * self._latency.itemsize)

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, target: object) -> bool:
        return target in self._rows

    # -- updates ----------------------------------------------------------------

    def _row(self, target: str) -> int | None:
        row = self._rows.get(target)
        if row is not None or len(self._targets) >= self.max_models:
            return row
        row = len(self._targets)
        self._rows[target] = row
        self._targets.append(target)
        self._versions.append("")
        counters = (
            self._invocations,
            self._errors,
            self._loads,
            self._failures,
            self._evictions,
            self._memory,
            self._disk,
        )
        for counts in counters:
            counts.append(0)
        for times in (self._last_used, self._download, self._load, self._loaded_at):
            times.append(0.0)
        self._failed.append(0)
        self._latency.frombytes(self._zeros)
        return row

    def request(self, target: str | None, seconds: float) -> None:
        """A request to ``target`` answered in ``seconds`` (the hot path: keep it cheap)."""
        bucket = latency_bucket(seconds)
        self.latency[bucket] += 1
        row = self._rows.get(target) if target is not None else None
        if row is None:
            self.untracked += 1
            return
        self._invocations[row] += 1
        self._last_used[row] = self._clock()
        index = row * BUCKETS + bucket
        try:
            self._latency[index] += 1
        except OverflowError:  # 4 billion requests in one bucket: halve the row, quantiles stay
            self._halve(row)
            self._latency[index] += 1

    def error(self, target: str | None) -> None:
        """A request to ``target`` that failed (its latency is not counted)."""
        row = self._rows.get(target) if target is not None else None
        if row is None:
            self.untracked += 1
            return
        self._invocations[row] += 1
        self._errors[row] += 1
        self._last_used[row] = self._clock()

    def _halve(self, row: int) -> None:
        start = row * BUCKETS
        for index in range(start, start + BUCKETS):
            self._latency[index] //= 2

    def loaded(self, entry: Entry) -> None:
        """``entry`` became resident: record its sizes and load timings."""
        row = self._row(entry.target)
        if row is None:
            return
        self._versions[row] = entry.version
        self._loads[row] += 1
        self._memory[row] = entry.size
        self._disk[row] = entry.disk_size
        self._download[row] = entry.download_seconds
        self._load[row] = entry.load_seconds
        self._loaded_at[row] = self._clock()
        self._failed[row] = 0
        self._last_error.pop(row, None)

    def evicted(self, entry: Entry) -> None:
        """``entry`` left memory."""
        row = self._rows.get(entry.target)
        if row is not None:
            self._evictions[row] += 1

    def failed(self, target: str, code: str, message: str, *, exists: bool = True) -> None:
        """A load of ``target`` failed; ``exists`` is False when the store has no such artifact."""
        row = self._row(target) if exists else self._rows.get(target)
        if row is None:
            return
        self._failures[row] += 1
        self._failed[row] = 1
        self._last_error[row] = f"{code}: {message}"[:500]

    # -- reads --------------------------------------------------------------------

    def _state(self, row: int, cache: CacheView, loading: set[str]) -> str:
        target = self._targets[row]
        if cache.get(target) is not None:
            return "memory"
        if target in loading:
            return "loading"
        if self._failed[row]:
            return "failed"
        if (target, self._versions[row]) in cache.disk:
            return "disk"
        return "store"

    def _describe(self, row: int, cache: CacheView, loading: set[str]) -> dict[str, Any]:
        start = row * BUCKETS
        p50, p90, p99 = percentiles(self._latency[start : start + BUCKETS])
        last_used = self._last_used[row]
        loaded_at = self._loaded_at[row]
        return {
            "target": self._targets[row],
            "version": self._versions[row] or None,
            "state": self._state(row, cache, loading),
            "memoryBytes": self._memory[row],
            "diskBytes": self._disk[row],
            "invocations": self._invocations[row],
            "errors": self._errors[row],
            "lastUsed": last_used or None,
            "loads": self._loads[row],
            "failures": self._failures[row],
            "evictions": self._evictions[row],
            "downloadSeconds": self._download[row],
            "loadSeconds": self._load[row],
            "loadedAt": loaded_at or None,
            "lastError": self._last_error.get(row),
            "latency": {"p50": p50, "p90": p90, "p99": p99},
        }

    def totals(self, target: str) -> tuple[int, int, float, float] | None:
        """``(requests, errors, last used, seconds answering)`` of ``target``; None when it is not tracked.

        The seconds are the latency histogram's estimate (each request at its bucket's middle).
        """
        row = self._rows.get(target)
        if row is None:
            return None
        start = row * BUCKETS
        counts = np.frombuffer(self._latency, dtype=np.uint32)[start : start + BUCKETS].astype(np.float64)
        seconds = float(counts @ _VALUES)
        return self._invocations[row], self._errors[row], self._last_used[row], seconds

    def model(self, target: str, cache: CacheView) -> dict[str, Any] | None:
        """One model's statistics, or None when it is not tracked."""
        row = self._rows.get(target)
        return None if row is None else self._describe(row, cache, set(cache.loading()))

    def query(
        self,
        cache: CacheView,
        *,
        sort: str = "invocations",
        descending: bool = True,
        offset: int = 0,
        limit: int = 100,
        search: str = "",
        state: str = "",
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(matching, page)``: models whose target contains ``search`` (any case) in ``state``,
        sorted by ``sort`` (one of :data:`SORT_KEYS`; ties keep first-seen order), from ``offset``."""
        loading = set(cache.loading())
        rows = np.arange(len(self._targets))
        if search:
            needle = search.casefold()
            rows = np.fromiter((i for i, t in enumerate(self._targets) if needle in t.casefold()), dtype=np.int64)
        states: list[str] | None = None
        if state or sort == "state":
            states = [self._state(int(i), cache, loading) for i in rows]
            if state:
                keep = [n for n, s in enumerate(states) if s == state]
                rows, states = rows[keep], [states[n] for n in keep]
        if sort in ("target", "version", "state"):
            labels = self._targets if sort == "target" else self._versions
            keys = states if states is not None else [labels[i] for i in rows]
            ordered = sorted(range(len(rows)), key=keys.__getitem__, reverse=descending)  # stable both ways
            page = rows[ordered[offset : offset + limit]]
        else:
            key = self._sort_column(sort, rows)
            # NaN (no latency yet) sorts last either way
            key = np.where(np.isnan(key), -np.inf if descending else np.inf, key)
            order = np.argsort(-key if descending else key, kind="stable")
            page = rows[order[offset : offset + limit]]
        return len(rows), [self._describe(int(row), cache, loading) for row in page]

    def _sort_column(self, sort: str, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if sort in ("p50", "p90", "p99"):
            matrix = np.frombuffer(self._latency, dtype=np.uint32).reshape(-1, BUCKETS)[rows]
            return _quantile_columns(matrix, {"p50": 0.5, "p90": 0.9, "p99": 0.99}[sort])
        columns: dict[str, tuple[array[int] | array[float], Any]] = {
            "memoryBytes": (self._memory, np.uint64),
            "diskBytes": (self._disk, np.uint64),
            "invocations": (self._invocations, np.uint64),
            "errors": (self._errors, np.uint64),
            "lastUsed": (self._last_used, np.float64),
            "loads": (self._loads, np.uint64),
            "failures": (self._failures, np.uint64),
            "evictions": (self._evictions, np.uint64),
            "downloadSeconds": (self._download, np.float64),
            "loadSeconds": (self._load, np.float64),
            "loadedAt": (self._loaded_at, np.float64),
        }
        column, dtype = columns[sort]
        # fancy indexing copies, so no view keeps the array's buffer exported (it could not grow)
        values: np.ndarray[Any, Any] = np.frombuffer(column, dtype=dtype)[rows].astype(np.float64)
        return values

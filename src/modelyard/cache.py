"""The memory cache: loaded models under a byte budget, loaded on demand.

Rules (SPEC §4):

* The budget counts measured model sizes plus reservations for loads under way;
  room is made *before* a load from the best estimate (the size this version had
  last time, else its size on disk times the ratio observed so far) and settled to
  the measured size right after it, so the accounted total never exceeds the budget.
* A load is measured on the load thread as the growth of the C heap, with the GC
  held off meanwhile; see :meth:`~modelyard.policy.Residency.learn` for how low
  readings are corrected. Evicted models are unloaded on their own thread, between
  measurements (:func:`modelyard.sizing.freeing`), as soon as no request uses them:
  the memory comes back at once however many loads follow each other.
* One load per target at a time: concurrent requests for a cold model await the same
  task. Different targets load in parallel up to ``max_concurrent_loads``. A request
  waits at most ``wait_timeout`` seconds (then :class:`ModelNotReady`), while the
  load goes on for the next request. A failed load inserts nothing and is retried by
  the next request.
* Eviction follows an :class:`~modelyard.policy.EvictionPolicy`; pinned models and
  models with a request in flight are never chosen; a model evicted while a request
  still uses it is unloaded when that request ends. A model larger than the whole
  budget fails with :class:`ModelTooLarge` without evicting anything.
* The artifact's version is part of the identity. A warm model is re-checked in the
  background at most every ``version_check_interval`` seconds; a new version loads
  beside the old one, which keeps serving until the new one replaces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from modelyard import sizing
from modelyard.artifacts import DiskCache, resolve_version
from modelyard.entries import CacheEvents, Entry, Key
from modelyard.errors import (
    ArtifactInvalid,
    ArtifactNotFound,
    CacheFull,
    InsufficientMemory,
    ModelNotReady,
    ModelTooLarge,
    ServiceUnavailable,
)
from modelyard.executors import LoadExecutor
from modelyard.handlers import Loader, Model
from modelyard.policy import GDSF, EvictionPolicy, Residency
from modelyard.store import Store

__all__ = ["ModelCache"]

log = logging.getLogger("modelyard.cache")

_CONFIRMED_LIMIT = 100_000


class ModelCache:
    """Loaded models of one instance, under ``budget`` bytes (see module doc)."""

    def __init__(
        self,
        store: Store,
        disk: DiskCache,
        loader: Loader,
        *,
        budget: int,
        max_concurrent_loads: int = 4,
        load_threads: int = 1,
        wait_timeout: float = 60.0,
        version_check_interval: float = 5.0,
        enabled: bool = True,
        policy: EvictionPolicy[Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        measure: Callable[[Callable[[], Model]], tuple[Model, int]] = sizing.measure,
        events: CacheEvents | None = None,
        cost: Callable[[str, float], float] | None = None,
        pin_budget: int | None = None,
    ) -> None:
        self.store = store
        self.disk = disk
        self.loader = loader
        self.wait_timeout = wait_timeout
        self.version_check_interval = version_check_interval
        self.enabled = enabled
        self.policy: EvictionPolicy[Any] = policy if policy is not None else GDSF()
        self.residency: Residency[Key] = Residency(budget, self.policy)
        self.pin_budget = budget if pin_budget is None else pin_budget
        self.events: CacheEvents = events if events is not None else CacheEvents()
        self._clock = clock
        self._measure = measure
        self._cost = cost
        self._slots = asyncio.Semaphore(max_concurrent_loads)
        # Framework loads run on their own threads: one by default, since loads are
        # measured one at a time anyway and a fixed thread keeps per-thread framework
        # state from being charged to whichever model first ran on a new thread. Their
        # stacks are large: native parsers recurse (modelyard.executors).
        self._load_executor = LoadExecutor(load_threads, thread_name_prefix="modelyard-load")
        # Unloads free memory on a thread of their own: not the load thread, whose
        # allocator caches would hand the freed chunks to the next load unseen by its
        # measurement, and not the event loop, which must not wait for a measurement.
        self._unload_executor = ThreadPoolExecutor(1, thread_name_prefix="modelyard-unload")
        self._unloading: set[asyncio.Future[float]] = set()
        self._closed = False
        self._entries: dict[Key, Entry] = {}
        self._current: dict[str, Entry] = {}
        self._loads: dict[str, asyncio.Task[Entry]] = {}
        self._waiting: dict[str, int] = {}  # requests awaiting each target's load
        # target -> (version, when the store last said so): a reload within the check
        # interval comes from the disk cache without asking the store again
        self._confirmed: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self.loads = 0
        self.evictions: dict[str, int] = {}

    @property
    def budget(self) -> int:
        """The memory budget in bytes."""
        return self.residency.budget

    @property
    def used(self) -> int:
        """Measured bytes of the resident models."""
        return self.residency.used

    @property
    def reserved(self) -> int:
        """Bytes held for loads under way."""
        return self.residency.reserved

    # -- requests ---------------------------------------------------------------

    async def acquire(self, target: str) -> Entry:
        """The current model for ``target``, loading it if needed; :meth:`release` it after."""
        entry = self._current.get(target)
        if entry is not None:
            now = self._clock()
            if now - entry.checked_at >= self.version_check_interval:
                self._refresh_later(entry, now)
            entry.inflight += 1
            entry.hits += 1
            entry.last_used = now
            self.policy.touch(entry.key)
            self.events.hit()
            return entry
        self.events.miss()
        for _ in range(3):  # a freshly loaded model can be evicted before we resume
            entry = await self._wait_for_load(target)
            if entry.resident:
                entry.inflight += 1
                entry.hits += 1
                entry.last_used = self._clock()
                return entry
        raise ServiceUnavailable(
            f"Model '{target}' was evicted as soon as it loaded: the cache is too small for the traffic."
        )

    def release(self, entry: Entry) -> None:
        """End a request's use of ``entry``."""
        entry.inflight -= 1
        if entry.inflight:
            return
        if not entry.resident:
            self._unload_soon(entry, entry.evicted_for)
        elif not self.enabled and not entry.pinned and not self._waiting.get(entry.target):
            self._evict(entry, "cache_disabled")

    @contextlib.asynccontextmanager
    async def use(self, target: str) -> AsyncIterator[Entry]:
        """``async with cache.use(target) as entry:`` acquire and release around a block."""
        entry = await self.acquire(target)
        try:
            yield entry
        finally:
            self.release(entry)

    async def _wait_for_load(self, target: str) -> Entry:
        task = self._loads.get(target)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(target))
            self._loads[target] = task
            task.add_done_callback(functools.partial(self._load_done, target, time.perf_counter()))
        started = time.perf_counter()
        self._waiting[target] = self._waiting.get(target, 0) + 1
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.wait_timeout)
        except TimeoutError:
            raise ModelNotReady(
                f"Model '{target}' is still loading after {self.wait_timeout:g} s; retry shortly."
            ) from None
        finally:
            if waiting := self._waiting.pop(target) - 1:
                self._waiting[target] = waiting
            self.events.waited(time.perf_counter() - started)

    def _load_done(self, target: str, started: float, task: asyncio.Task[Entry]) -> None:
        if self._loads.get(target) is task:
            del self._loads[target]
        if not task.cancelled() and (error := task.exception()) is not None:
            self._confirmed.pop(target, None)  # a fixed artifact must be read from the store next time
            seconds = time.perf_counter() - started
            self.events.load_failed(error)
            self.events.model_failed(target, error, seconds)
            # a missing artifact is the caller's mistake, and may come by the thousand
            level = logging.DEBUG if isinstance(error, ArtifactNotFound) else logging.WARNING
            code = getattr(error, "code", "InternalFailure")
            log.log(
                level,
                "loading %s failed after %.1f ms: %s",
                target,
                seconds * 1000,
                error,
                extra={
                    "event": "load_failed",
                    "model": target,
                    "error_code": code,
                    "reason": str(error),
                    "seconds": round(seconds, 6),
                },
            )

    # -- loading ----------------------------------------------------------------

    async def _load(self, target: str) -> Entry:
        async with self._slots:
            confirmed = self._confirmed.get(target)
            fresh = confirmed is not None and self._clock() - confirmed[1] < self.version_check_interval
            artifact = await self.disk.fetch(self.store, target, confirmed[0] if fresh and confirmed else None)
            if not artifact.from_disk or not fresh:
                self._confirm(target, artifact.version)
            try:
                current = self._current.get(target)
                if current is not None and current.version == artifact.version:
                    current.checked_at = self._clock()
                    return current
                self.events.downloaded(artifact.download_seconds, from_disk=artifact.from_disk)
                return await self._load_artifact(
                    target, artifact.version, artifact.path, artifact.disk_size, artifact.download_seconds
                )
            except (ArtifactInvalid, ModelTooLarge):
                self.disk.discard(target, artifact.version)  # it can never load: keep no copy on disk
                raise
            finally:
                self.disk.release(artifact)

    async def _load_artifact(
        self, target: str, version: str, path: Any, disk_size: int, download_seconds: float
    ) -> Entry:
        key = (target, version)
        residency = self.residency
        known = residency.known_size(key)
        if known is not None and known > self.budget:
            raise self._too_large(target, known)
        estimate = residency.estimate(key, disk_size)
        reservation = estimate if estimate <= self.budget else 0
        self._settle(*residency.reserve(reservation, self._protected), reservation)
        try:
            started = time.perf_counter()
            load = functools.partial(self.loader.load_measured, path, self._measure)
            model, size = await asyncio.get_running_loop().run_in_executor(self._load_executor, load)
            load_seconds = time.perf_counter() - started
        finally:
            residency.release(reservation)
        size = residency.learn(key, disk_size, size)
        if size > self.budget:
            model.unload()
            raise self._too_large(target, size)
        cost = download_seconds + load_seconds
        try:
            self._settle(
                *residency.admit(key, size, self._cost(target, cost) if self._cost else cost, self._protected), size
            )
        except BaseException:
            model.unload()
            raise
        now = self._clock()
        entry = Entry(target, version, model, size, disk_size, download_seconds, load_seconds, now, now, last_used=now)
        self._entries[key] = entry
        self.loads += 1
        previous = self._current.get(target)
        self._current[target] = entry
        if previous is not None and previous is not entry:
            entry.pinned = previous.pinned
            self._evict(previous, "replaced")
        self.events.loaded(load_seconds)
        self.events.model_loaded(entry)
        log.info(
            "loaded %s version %s: %d bytes in %.1f ms (download %.1f ms)",
            target,
            version,
            size,
            load_seconds * 1000,
            download_seconds * 1000,
            extra={
                "event": "load",
                "model": target,
                "version": version,
                "memory_bytes": size,
                "disk_bytes": disk_size,
                "download_seconds": round(download_seconds, 6),
                "load_seconds": round(load_seconds, 6),
            },
        )
        return entry

    def _too_large(self, target: str, size: int) -> ModelTooLarge:
        return ModelTooLarge(
            f"Model '{target}' needs {size} bytes of memory, more than the whole budget of {self.budget} bytes."
        )

    def _protected(self, key: Key) -> bool:
        """Never evicted for room: pinned, serving a request, or awaited by requests."""
        entry = self._entries[key]
        return entry.pinned or entry.inflight > 0 or entry.target in self._waiting

    def _settle(self, victims: list[Key], fits: bool, need: int) -> None:
        """Carry out the evictions the residency chose; raise when the room was not found."""
        for key in victims:
            self._evict(self._entries[key], "capacity", counted=True)
        if not fits:
            raise CacheFull(
                f"No room for {need} more bytes: the resident models are pinned or in use "
                f"({self.used} of {self.budget} bytes)."
            )

    # -- removal ----------------------------------------------------------------

    def _evict(self, entry: Entry, reason: str, *, counted: bool = False) -> None:
        """Take ``entry`` out of memory; ``counted`` when the residency already removed it."""
        if not entry.resident:
            return
        entry.resident = False
        entry.evicted_for = reason
        del self._entries[entry.key]
        if not counted:
            self.residency.remove(entry.key, evicted=False)
        if self._current.get(entry.target) is entry:
            del self._current[entry.target]
        self.evictions[reason] = self.evictions.get(reason, 0) + 1
        self.events.evicted(reason)
        self.events.model_evicted(entry, reason)
        if entry.inflight == 0:
            self._unload_soon(entry, reason)

    def _unload_soon(self, entry: Entry, reason: str) -> None:
        loop = asyncio.get_running_loop()
        if self._closed:  # a request that outlived close(): its thread is gone
            future: asyncio.Future[float] = loop.create_future()
            future.set_result(_free(entry))
        else:
            future = loop.run_in_executor(self._unload_executor, _free, entry)
        self._unloading.add(future)
        future.add_done_callback(functools.partial(self._unloaded, entry, reason))

    def _unloaded(self, entry: Entry, reason: str, future: asyncio.Future[float]) -> None:
        self._unloading.discard(future)
        if future.cancelled():
            return
        seconds = future.result()
        self.events.unloaded(seconds)
        log.info(
            "evicted %s version %s (%s): %d bytes, %d hits, unloaded in %.1f ms",
            entry.target,
            entry.version,
            reason,
            entry.size,
            entry.hits,
            seconds * 1000,
            extra={
                "event": "evict",
                "model": entry.target,
                "version": entry.version,
                "reason": reason,
                "memory_bytes": entry.size,
                "hits": entry.hits,
                "resident_seconds": round(self._clock() - entry.loaded_at, 3),
                "unload_seconds": round(seconds, 6),
            },
        )

    # -- versions ---------------------------------------------------------------

    def _confirm(self, target: str, version: str) -> None:
        self._confirmed[target] = (version, self._clock())
        self._confirmed.move_to_end(target)
        if len(self._confirmed) > _CONFIRMED_LIMIT:
            self._confirmed.popitem(last=False)

    def _refresh_later(self, entry: Entry, now: float) -> None:
        entry.checked_at = now  # one check per interval, even while this one runs
        task = asyncio.get_running_loop().create_task(self._refresh(entry))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, entry: Entry) -> None:
        try:
            version = await resolve_version(self.store, entry.target)
            self._confirm(entry.target, version)
            if version != entry.version and entry.target not in self._loads:
                await self._wait_for_load(entry.target)
        except ArtifactNotFound:
            pass  # SPEC §3: a deleted artifact is served until it leaves the cache
        except Exception as exc:  # noqa: BLE001 - the old version keeps serving; the next check retries
            log.warning("refreshing %s failed: %s", entry.target, exc)

    # -- operator actions -------------------------------------------------------

    async def pin(self, target: str) -> Entry:
        """Load ``target`` (if needed) and keep it resident until :meth:`unpin`.

        Pinned models hold at most ``pin_budget`` bytes: a pin beyond it is refused
        (:class:`InsufficientMemory`), and the model stays as an ordinary resident one.
        """
        async with self.use(target) as entry:
            if not entry.pinned:
                pinned = sum(e.size for e in self._entries.values() if e.pinned)
                if pinned + entry.size > self.pin_budget:
                    raise InsufficientMemory(
                        f"Pinning '{target}' ({entry.size} bytes) would take pinned models past their limit of "
                        f"{self.pin_budget} bytes ({pinned} pinned already)."
                    )
            entry.pinned = True
        return entry

    def unpin(self, target: str) -> bool:
        """Let ``target`` be evicted again; False when it is not resident."""
        entry = self._current.get(target)
        if entry is None:
            return False
        entry.pinned = False
        return True

    async def preload(self, targets: list[str]) -> None:
        """Load ``targets`` now, as room allows, so their first requests are warm."""
        for target in targets:
            async with self.use(target):
                pass

    def unload(self, target: str) -> bool:
        """Drop ``target`` from memory (kept on disk); False when it was not resident."""
        entry = self._current.get(target)
        if entry is None:
            return False
        self._evict(entry, "unloaded")
        return True

    def invalidate(self, target: str) -> None:
        """Forget ``target`` entirely: memory, disk and known version."""
        for entry in [e for e in self._entries.values() if e.target == target]:
            self._evict(entry, "invalidated")
        self._confirmed.pop(target, None)
        self.disk.invalidate(target)

    def get(self, target: str) -> Entry | None:
        """The resident entry serving ``target``, without loading or counting a hit."""
        return self._current.get(target)

    def entries(self) -> list[Entry]:
        """Every resident model."""
        return list(self._entries.values())

    def loading(self) -> list[str]:
        """Targets whose load is under way."""
        return list(self._loads)

    async def close(self) -> None:
        """Cancel background work and unload every model."""
        for task in [*self._loads.values(), *self._background]:
            task.cancel()
        for entry in list(self._entries.values()):
            entry.pinned = False
            self._evict(entry, "shutdown")
        if self._unloading:
            await asyncio.gather(*self._unloading, return_exceptions=True)
        self._closed = True
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        self._unload_executor.shutdown(wait=False)


def _free(entry: Entry) -> float:
    """Unload ``entry``'s model outside every measuring window; returns the seconds it took."""
    with sizing.freeing():
        started = time.perf_counter()
        try:
            entry.model.unload()
        except Exception:  # a handler failing to clean up must not break the cache
            log.exception("unloading %s failed", entry.target)
        return time.perf_counter() - started

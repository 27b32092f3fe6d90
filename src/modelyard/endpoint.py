"""An endpoint: one store, one cache, one request path, independent of HTTP.

:meth:`Endpoint.run` is every request's path once the HTTP layer has read it: refuse
it when the endpoint is closing or full, validate the target, get the model from the
cache (loading it on a miss), run the request's work on it (on the event loop, or on
a worker thread when the model's code may block or the body is large, then in turns),
and time the model apart from the overhead. :meth:`Endpoint.invoke` is
``InvokeEndpoint``'s work; the Open Inference Protocol brings its own.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from modelyard.artifacts import DiskCache, validate_target
from modelyard.cache import ModelCache
from modelyard.entries import Entry
from modelyard.errors import ModelError, ModelyardError, ServiceUnavailable, ValidationError
from modelyard.handlers import Loader, import_soon
from modelyard.logs import RequestLog
from modelyard.metrics import Metrics, MetricsHub
from modelyard.policy import POLICIES
from modelyard.settings import Settings
from modelyard.store import Store, open_store
from modelyard.turns import Turns

__all__ = ["Endpoint", "Outcome", "Prediction"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What a request's work gave, with the time it took and whether its model was in memory."""

    value: T
    model_seconds: float
    cache_hit: bool


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's answer to one ``InvokeEndpoint`` request."""

    body: bytes
    content_type: str
    model_seconds: float
    cache_hit: bool = True


def _guarded(work: Callable[[Entry], T], entry: Entry) -> T:
    try:
        return work(entry)
    except ModelyardError:
        raise
    except Exception as exc:  # the model's own code failed: the caller sees ModelError
        raise ModelError(f"{type(exc).__name__}: {exc}", original_status=500) from exc


def _invoke(body: bytes, content_type: str, accept: str, attributes: str | None, entry: Entry) -> tuple[bytes, str]:
    return entry.model.invoke(body, content_type, accept, attributes)


class Endpoint:
    """A multi-model endpoint over one store (see module doc)."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        cache: ModelCache | None = None,
        hub: MetricsHub | None = None,
        disk: DiskCache | None = None,
    ) -> None:
        if store is None and settings.store is None:
            raise ValidationError("An endpoint needs a store: a folder or a URL such as s3://bucket/prefix/.")
        self.settings = settings
        self.name = settings.endpoint_name
        self.variant = settings.variant_name
        self.variant_header = settings.variant_name.encode("latin-1")
        self.metrics = Metrics(settings.endpoint_name, settings.variant_name, settings.instance_id)
        self.store = store if store is not None else open_store(str(settings.store), settings.store_options)
        self.cache = (
            cache
            if cache is not None
            else ModelCache(
                self.store,
                disk if disk is not None else DiskCache.for_endpoint(settings, self.store),
                Loader(settings.framework, trusted=settings.trust_store),
                budget=int(settings.memory),
                max_concurrent_loads=settings.max_concurrent_loads,
                wait_timeout=settings.load_wait_timeout,
                version_check_interval=settings.version_check_interval,
                enabled=settings.model_cache == "Enabled",
                policy=POLICIES[settings.eviction](),
                events=self.metrics,
                pin_budget=int(settings.memory * settings.pinned_fraction),
            )
        )
        self.metrics.cache = self.cache
        self.request_log = RequestLog(settings.request_log_sample)
        self.inflight = 0
        self.closing = False
        self._inline_payload = int(settings.inline_payload)
        #: turns for requests with bodies over ``inline_payload`` (see :mod:`modelyard.turns`)
        self.large = Turns(settings.large_requests, settings.large_queue)
        self._hub = hub
        if hub is not None:
            hub.add(self.metrics)

    async def start(self) -> None:
        """Load the preloaded and pinned models (importing their frameworks first when there are some).

        Frameworks are otherwise imported in the background (:func:`~modelyard.handlers.import_soon`),
        so an endpoint with nothing to preload is ready at once.
        """
        import_soon()
        if self.settings.preload or self.settings.pin:
            await asyncio.to_thread(self.cache.loader.import_frameworks)
        await self.cache.preload(list(self.settings.preload))
        for target in self.settings.pin:
            await self.cache.pin(target)

    async def close(self) -> None:
        """Refuse new requests and unload every model."""
        self.closing = True
        await self.cache.close()
        if self._hub is not None:
            self._hub.remove(self.metrics)

    async def drain(self, timeout: float = 60.0) -> None:
        """Refuse new requests, let those in flight finish (up to ``timeout``), then close."""
        self.closing = True
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.close()

    def is_large(self, size: int) -> bool:
        """Whether a request of ``size`` bytes runs on a worker thread, in turns."""
        return size > self._inline_payload

    def remaining_wait(self, since: float) -> float:
        """What is left of a request's ``load_wait_timeout`` when it started waiting at ``since`` (monotonic)."""
        return self.settings.load_wait_timeout - (time.monotonic() - since)

    async def run(self, target: str | None, size: int, work: Callable[[Entry], T]) -> Outcome[T]:
        """Run ``work(entry)`` on ``target``'s resident model for a request of ``size`` bytes (see module doc).

        Raises a :class:`ModelyardError` for every failure; an exception of the model's own
        code becomes a :class:`ModelError`.
        """
        if self.closing:
            raise ServiceUnavailable("The endpoint is shutting down.")
        if self.inflight >= self.settings.max_inflight:
            raise ServiceUnavailable(
                f"The endpoint is at its limit of {self.settings.max_inflight} requests in progress."
            )
        large = size > self._inline_payload
        if large:
            self.large.check()  # refused before its model is loaded or held
        hit = target is not None and self.cache.get(target) is not None
        target = target if hit and target is not None else validate_target(target)  # resident ones were checked
        waiting_since = time.monotonic()
        self.inflight += 1
        try:
            entry = await self.cache.acquire(target)
            try:
                if large:
                    async with self.large.turn(self.remaining_wait(waiting_since)):
                        started = time.perf_counter()
                        value = await asyncio.to_thread(_guarded, work, entry)
                elif entry.model.threaded:
                    started = time.perf_counter()
                    value = await asyncio.to_thread(_guarded, work, entry)
                else:
                    started = time.perf_counter()
                    value = _guarded(work, entry)
                return Outcome(value, time.perf_counter() - started, hit)
            finally:
                self.cache.release(entry)
        finally:
            self.inflight -= 1

    async def invoke(
        self,
        target: str | None,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        custom_attributes: str | None = None,
    ) -> Prediction:
        """``InvokeEndpoint``: run ``target`` on ``body``; raises a :class:`ModelyardError` for every failure."""
        work = functools.partial(_invoke, body, content_type or "text/csv", accept or "", custom_attributes)
        outcome = await self.run(target, len(body), work)
        out, media = outcome.value
        return Prediction(out, media, outcome.model_seconds, outcome.cache_hit)

"""Operator routes beyond SageMaker's API: what is cached, per-model statistics.

``GET /cache`` lists resident and loading models; ``DELETE /cache/{target}`` forgets
a target everywhere (memory, disk cache and known version), so the next request
reads the store again.

``GET /stats`` sums the endpoint up (counters, hit ratio, latency, memory, recent
errors); ``GET /stats/models`` pages through every tracked model
(``?sort=invocations&order=desc&offset=0&limit=100&q=Hou&state=memory``) and
``GET /stats/models/{target}`` shows one (:mod:`modelyard.stats`). Times are in
seconds, dates in seconds since the epoch.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.errors import ModelNotLoaded, ValidationError
from modelyard.server.context import primary_endpoint
from modelyard.stats import SORT_KEYS, STATES, percentiles

__all__ = ["invalidate", "list_cache", "stats_model", "stats_models", "stats_summary", "summary"]

MAX_LIMIT = 1000


async def list_cache(request: Request) -> Response:
    """Resident models (largest first) and the targets loading now."""
    cache = primary_endpoint(request).cache
    models = [
        {
            "target": e.target,
            "version": e.version,
            "memoryBytes": e.size,
            "diskBytes": e.disk_size,
            "pinned": e.pinned,
            "hits": e.hits,
            "downloadSeconds": round(e.download_seconds, 6),
            "loadSeconds": round(e.load_seconds, 6),
        }
        for e in sorted(cache.entries(), key=lambda e: e.size, reverse=True)
    ]
    return JSONResponse(
        {
            "memoryBudgetBytes": cache.budget,
            "memoryUsedBytes": cache.used + cache.reserved,
            "diskBudgetBytes": cache.disk.budget,
            "diskUsedBytes": cache.disk.used,
            "models": models,
            "loading": cache.loading(),
        }
    )


async def invalidate(request: Request) -> Response:
    """Forget a target in memory and on disk."""
    request.app.state.guard.change(request.scope, b"")
    target = validate_target(request.path_params["target"])
    primary_endpoint(request).cache.invalidate(target)
    return JSONResponse({"status": f"{target} invalidated."})


def summary(endpoint: Endpoint) -> dict[str, Any]:
    """The endpoint's counters, hit ratio, latency percentiles, memory and recent errors."""
    metrics, cache = endpoint.metrics, endpoint.cache
    lookups = metrics.hits + metrics.misses
    p50, p90, p99 = percentiles(metrics.models.latency)
    loading = cache.loading()
    return {
        "endpoint": endpoint.name,
        "variant": endpoint.variant,
        "instance": endpoint.settings.instance_id,
        "uptimeSeconds": round(time.time() - metrics.started, 3),
        "invocations": metrics.invocations,
        "invocation4XXErrors": metrics.errors_4xx,
        "invocation5XXErrors": metrics.errors_5xx,
        "cacheHits": metrics.hits,
        "cacheMisses": metrics.misses,
        "cacheHitRatio": metrics.hits / lookups if lookups else None,
        "loads": metrics.loads,
        "diskCacheHits": metrics.disk_hits,
        "loadFailures": dict(metrics.failures),
        "evictions": dict(metrics.evictions),
        "loadedModels": len(cache.entries()),
        "loadingModels": len(loading),
        "loading": loading[:100],
        "trackedModels": len(metrics.models),
        "untrackedRequests": metrics.models.untracked,
        "memoryUsedBytes": cache.used + cache.reserved,
        "memoryBudgetBytes": cache.budget,
        "diskUsedBytes": cache.disk.used,
        "diskBudgetBytes": cache.disk.budget,
        "diskModels": len(cache.disk),
        "latency": {"p50": p50, "p90": p90, "p99": p99},
        "recentErrors": [
            {"time": at, "requestId": rid, "target": target, "status": status, "code": code, "message": message[:500]}
            for at, rid, target, status, code, message in reversed(metrics.recent_errors)
        ],
    }


async def stats_summary(request: Request) -> Response:
    """``GET /stats``: see :func:`summary`."""
    return JSONResponse(summary(primary_endpoint(request)))


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ValidationError(f"Query parameter {name} must be an integer, not {raw!r}.") from None
    if not low <= value <= high:
        raise ValidationError(f"Query parameter {name} must be between {low} and {high}.")
    return value


async def stats_models(request: Request) -> Response:
    """``GET /stats/models``: a page of tracked models, filtered and sorted.

    ``sort`` (default ``invocations``) is one of :data:`~modelyard.stats.SORT_KEYS`,
    ``order`` is ``desc`` (default) or ``asc``, ``q`` keeps targets containing it (any
    case), ``state`` keeps one of :data:`~modelyard.stats.STATES`; ``offset`` and
    ``limit`` (at most 1,000) page through the result. The answer says how many
    models matched (``total``) besides the page itself (``models``).
    """
    params = request.query_params
    sort = params.get("sort", "invocations")
    if sort not in SORT_KEYS:
        raise ValidationError(f"sort must be one of {', '.join(SORT_KEYS)}; got {sort!r}.")
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ValidationError(f"order must be asc or desc; got {order!r}.")
    state = params.get("state", "")
    if state and state not in STATES:
        raise ValidationError(f"state must be one of {', '.join(STATES)}; got {state!r}.")
    search = params.get("q", "")[:1024]
    offset = _int(request, "offset", 0, 0, 2**62)
    limit = _int(request, "limit", 100, 0, MAX_LIMIT)
    endpoint = primary_endpoint(request)
    total, models = endpoint.metrics.models.query(
        endpoint.cache,
        sort=sort,
        descending=order == "desc",
        offset=offset,
        limit=limit,
        search=search,
        state=state,
    )
    return JSONResponse(
        {"total": total, "offset": offset, "limit": limit, "sort": sort, "order": order, "models": models}
    )


async def stats_model(request: Request) -> Response:
    """``GET /stats/models/{target}``: one model's statistics (404 when it is not tracked)."""
    endpoint = primary_endpoint(request)
    target = request.path_params["target"]
    found = endpoint.metrics.models.model(target, endpoint.cache)
    if found is None:
        raise ModelNotLoaded(f"No statistics for model {target}: it has never been loaded.")
    return JSONResponse(found)

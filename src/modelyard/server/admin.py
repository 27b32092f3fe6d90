"""Operator routes beyond SageMaker's API: what is served, what is cached, per-model statistics.

Every view covers any endpoint the server serves, however it was created:
``?endpoint=NAME`` picks it (default: the default endpoint, or the only one), and
``&variant=V&instance=I`` narrows it to one variant or one instance
(:mod:`modelyard.server.context`). Over several instances, counters are summed,
latency percentiles come from the summed histograms, and each answer also lists
the instances one by one (SageMaker's ``LoadedModelCount`` Sum and Average, say).

``GET /stats/endpoints`` lists the endpoints with their variants and instances.
``GET /cache`` lists resident and loading models; ``DELETE /cache/{target}`` forgets
a target everywhere (memory, disk cache and known version), so the next request
reads the store again. ``GET /stats`` sums the endpoint up (counters, hit ratio,
latency, memory, recent errors); ``GET /stats/models`` pages through every tracked
model (``?sort=invocations&order=desc&offset=0&limit=100&q=Hou&state=memory``) and
``GET /stats/models/{target}`` shows one (:mod:`modelyard.stats`). Times are in
seconds, dates in seconds since the epoch.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.errors import ModelNotLoaded, ValidationError
from modelyard.server.context import endpoints_of, served
from modelyard.stats import SORT_KEYS, STATES, percentiles

__all__ = [
    "endpoints",
    "invalidate",
    "list_cache",
    "stats_model",
    "stats_models",
    "stats_summary",
    "summary",
]

MAX_LIMIT = 1000
_LATENCY_KEYS = ("p50", "p90", "p99")


def _selected(request: Request) -> list[Endpoint]:
    params = request.query_params
    return served(request).instances(params.get("variant"), params.get("instance"))


def _where(instance: Endpoint) -> dict[str, str]:
    return {"variant": instance.variant, "instance": instance.settings.instance_id}


async def endpoints(request: Request) -> Response:
    """``GET /stats/endpoints``: every endpoint this server serves, with its variants and instances."""
    listed = []
    for one in endpoints_of(request).all():
        instances = one.instances()
        variants: dict[str, list[str]] = {}
        for instance in instances:
            variants.setdefault(instance.variant, []).append(instance.settings.instance_id)
        listed.append(
            {
                "name": one.name,
                "default": one.default is not None,
                "variants": [{"name": name, "instances": ids} for name, ids in variants.items()],
            }
        )
    return JSONResponse({"endpoints": listed})


async def list_cache(request: Request) -> Response:
    """Resident models (largest first) and the targets loading now."""
    instances = _selected(request)
    models: list[dict[str, Any]] = [
        {
            "target": e.target,
            "version": e.version,
            "memoryBytes": e.size,
            "diskBytes": e.disk_size,
            "pinned": e.pinned,
            "hits": e.hits,
            "downloadSeconds": round(e.download_seconds, 6),
            "loadSeconds": round(e.load_seconds, 6),
            **_where(instance),
        }
        for instance in instances
        for e in instance.cache.entries()
    ]
    models.sort(key=lambda m: m["memoryBytes"], reverse=True)
    caches = [instance.cache for instance in instances]
    return JSONResponse(
        {
            "memoryBudgetBytes": sum(c.budget for c in caches),
            "memoryUsedBytes": sum(c.used + c.reserved for c in caches),
            "diskBudgetBytes": sum(c.disk.budget for c in caches),
            "diskUsedBytes": sum(c.disk.used for c in caches),
            "models": models,
            "loading": sorted(t for c in caches for t in c.loading()),
        }
    )


async def invalidate(request: Request) -> Response:
    """Forget a target in memory and on disk, on every instance of the endpoint."""
    request.app.state.guard.change(request.scope, b"")
    target = validate_target(request.path_params["target"])
    for instance in _selected(request):
        instance.cache.invalidate(target)
    return JSONResponse({"status": f"{target} invalidated."})


def _instance_summary(endpoint: Endpoint) -> dict[str, Any]:
    metrics, cache = endpoint.metrics, endpoint.cache
    lookups = metrics.hits + metrics.misses
    return {
        **_where(endpoint),
        "invocations": metrics.invocations,
        "cacheHitRatio": metrics.hits / lookups if lookups else None,
        "loadedModels": len(cache.entries()),
        "memoryUsedBytes": cache.used + cache.reserved,
        "memoryBudgetBytes": cache.budget,
    }


def summary(instances: list[Endpoint]) -> dict[str, Any]:
    """The counters, hit ratio, latency percentiles, memory and recent errors of ``instances``, together."""
    first = instances[0]
    metrics = [i.metrics for i in instances]
    caches = [i.cache for i in instances]

    def total(name: str) -> int:
        return sum(getattr(m, name) for m in metrics)

    hits, misses = total("hits"), total("misses")
    latency = [sum(bucket) for bucket in zip(*(m.models.latency for m in metrics), strict=True)]
    p50, p90, p99 = percentiles(latency)
    loading = sorted(t for c in caches for t in c.loading())
    failures: dict[str, int] = {}
    evictions: dict[str, int] = {}
    for m in metrics:
        for code, count in m.failures.items():
            failures[code] = failures.get(code, 0) + count
        for reason, count in m.evictions.items():
            evictions[reason] = evictions.get(reason, 0) + count
    errors = sorted((e for m in metrics for e in m.recent_errors), key=lambda e: e[0], reverse=True)
    loaded = sum(len(c.entries()) for c in caches)
    one = len(instances) == 1
    return {
        "endpoint": first.name,
        "variant": first.variant if len({i.variant for i in instances}) == 1 else None,
        "instance": first.settings.instance_id if one else None,
        "instanceCount": len(instances),
        "uptimeSeconds": round(time.time() - min(m.started for m in metrics), 3),
        "invocations": total("invocations"),
        "invocation4XXErrors": total("errors_4xx"),
        "invocation5XXErrors": total("errors_5xx"),
        "cacheHits": hits,
        "cacheMisses": misses,
        "cacheHitRatio": hits / (hits + misses) if hits + misses else None,
        "loads": total("loads"),
        "diskCacheHits": total("disk_hits"),
        "loadFailures": failures,
        "evictions": evictions,
        "loadedModels": loaded,
        "loadedModelsAverage": loaded / len(instances),
        "loadingModels": len(loading),
        "loading": loading[:100],
        "trackedModels": sum(len(m.models) for m in metrics),
        "untrackedRequests": sum(m.models.untracked for m in metrics),
        "memoryUsedBytes": sum(c.used + c.reserved for c in caches),
        "memoryBudgetBytes": sum(c.budget for c in caches),
        "diskUsedBytes": sum(c.disk.used for c in caches),
        "diskBudgetBytes": sum(c.disk.budget for c in caches),
        "diskModels": sum(len(c.disk) for c in caches),
        "latency": {"p50": p50, "p90": p90, "p99": p99},
        "instances": [_instance_summary(i) for i in instances],
        "recentErrors": [
            {"time": at, "requestId": rid, "target": target, "status": status, "code": code, "message": message[:500]}
            for at, rid, target, status, code, message in errors[:50]
        ],
    }


async def stats_summary(request: Request) -> Response:
    """``GET /stats``: see :func:`summary`."""
    return JSONResponse(summary(_selected(request)))


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        raise ValidationError(f"Query parameter {name} must be an integer, not {raw!r}.") from None
    if not low <= value <= high:
        raise ValidationError(f"Query parameter {name} must be between {low} and {high}.")
    return value


def _sort_value(model: dict[str, Any], sort: str) -> Any:  # numbers, or text for the text columns
    value = model["latency"][sort] if sort in _LATENCY_KEYS else model[sort]
    return "" if value is None and sort in ("target", "version", "state") else value


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
    instances = _selected(request)
    total, models = 0, []
    for instance in instances:  # each instance's first offset + limit, then one order over them all
        count, page = instance.metrics.models.query(
            instance.cache,
            sort=sort,
            descending=order == "desc",
            offset=0 if len(instances) > 1 else offset,
            limit=offset + limit if len(instances) > 1 else limit,
            search=search,
            state=state,
        )
        total += count
        models += [m | _where(instance) for m in page]
    if len(instances) > 1:
        known = [m for m in models if _sort_value(m, sort) is not None]
        known.sort(key=functools.partial(_sort_value, sort=sort), reverse=order == "desc")
        models = (known + [m for m in models if _sort_value(m, sort) is None])[offset : offset + limit]
    return JSONResponse(
        {"total": total, "offset": offset, "limit": limit, "sort": sort, "order": order, "models": models}
    )


async def stats_model(request: Request) -> Response:
    """``GET /stats/models/{target}``: one model's statistics (404 when it is not tracked)."""
    target = request.path_params["target"]
    for instance in _selected(request):
        found = instance.metrics.models.model(target, instance.cache)
        if found is not None:
            return JSONResponse(found | _where(instance))
    raise ModelNotLoaded(f"No statistics for model {target}: it has never been loaded.")

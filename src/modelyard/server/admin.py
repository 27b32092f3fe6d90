"""Operator routes beyond SageMaker's API: what is cached, and invalidating a model.

``GET /cache`` lists resident and loading models; ``DELETE /cache/{target}`` forgets
a target everywhere (memory, disk cache and known version), so the next request
reads the store again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint

__all__ = ["invalidate", "list_cache"]


def _endpoint(request: Request) -> Endpoint:
    endpoint: Endpoint = request.app.state.endpoint
    return endpoint


async def list_cache(request: Request) -> Response:
    """Resident models (largest first) and the targets loading now."""
    cache = _endpoint(request).cache
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
    target = validate_target(request.path_params["target"])
    _endpoint(request).cache.invalidate(target)
    return JSONResponse({"status": f"{target} invalidated."})

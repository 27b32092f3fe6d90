"""The SageMaker multi-model container contract (bring-your-own container).

``GET /ping``, ``POST /invocations`` (target in the same header as the runtime API),
``POST /models`` ``{"model_name", "url"}`` to load (409 when loaded, 507 when it does
not fit), ``GET /models``, ``GET /models/{name}``, ``DELETE /models/{name}`` (404 when
not loaded) and ``POST /models/{name}/invoke``. A model loaded through this API is
pinned: SageMaker's agent, not the cache, decides when it goes. ``url`` is the
artifact's key in the store (a full store URL is accepted too).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.errors import (
    CacheFull,
    DiskUnavailable,
    InsufficientMemory,
    ModelAlreadyLoaded,
    ModelNotLoaded,
    ModelTooLarge,
    ServiceUnavailable,
    ValidationError,
)
from modelyard.server.body import read_body
from modelyard.server.context import endpoints_of, primary_endpoint
from modelyard.server.guard import Guard
from modelyard.server.headers import headers_of
from modelyard.server.responses import failure
from modelyard.server.runtime import respond

__all__ = ["delete_model", "describe_model", "invoke_model", "list_models", "load_model", "ping"]

MAX_BODY = 64 * 1024


def _names(request: Request) -> dict[str, str]:
    names: dict[str, str] = request.app.state.container_models
    return names


def _describe(endpoint: Endpoint, name: str, target: str) -> dict[str, object]:
    entry = endpoint.cache.get(target)
    return {
        "modelName": name,
        "modelUrl": target,
        "status": "Loaded" if entry is not None else "Loading",
        "memoryBytes": entry.size if entry else None,
        "version": entry.version if entry else None,
    }


async def ping(request: Request) -> Response:
    """Health check: 200 while serving; 503 while shutting down or while a disk cache cannot be written."""
    endpoint = endpoints_of(request).default
    if endpoint is not None and endpoint.closing:
        raise ServiceUnavailable("The endpoint is shutting down.")
    for instance in (i for served in endpoints_of(request).all() for i in served.instances()):
        if (problem := instance.cache.disk.problem()) is not None:
            where = f"endpoint {instance.name}"
            if instance is not endpoint:
                where += f" (variant {instance.variant}, instance {instance.settings.instance_id})"
            raise DiskUnavailable(f"The disk cache of {where} cannot be written: {problem}.")
    return Response(b"", media_type="application/json")


async def load_model(request: Request) -> Response:
    """``POST /models``: load and pin a model under a name (a JSON body; signed when keys are configured)."""
    endpoint = primary_endpoint(request)
    body = await read_body(request.stream(), MAX_BODY, headers_of(request.scope).content_length)
    guard: Guard = request.app.state.guard
    guard.change(request.scope, body, takes_json=True)
    try:
        doc = json.loads(body)
        name, url = doc["model_name"], doc.get("url") or doc["model_name"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ValidationError('Body must be JSON {"model_name": ..., "url": ...}.') from exc
    if not isinstance(name, str) or not isinstance(url, str):
        raise ValidationError('Body must be JSON {"model_name": ..., "url": ...} with text values.')
    prefix = endpoint.store.url.rstrip("/") + "/"
    target = validate_target(url[len(prefix) :] if url.startswith(prefix) else url)
    if name in _names(request):
        raise ModelAlreadyLoaded(f"Model {name} is already loaded.")
    try:
        await endpoint.cache.pin(target)
    except (ModelTooLarge, CacheFull, InsufficientMemory) as exc:
        raise InsufficientMemory(f"Cannot load model {name}: {exc.message}") from exc
    _names(request)[name] = target
    return JSONResponse({"status": f"Model {name} loaded."})


async def list_models(request: Request) -> Response:
    """``GET /models``: models loaded by name, then every other resident model."""
    endpoint = primary_endpoint(request)
    named = _names(request)
    models = [_describe(endpoint, n, t) for n, t in named.items()]
    pinned = set(named.values())
    models += [_describe(endpoint, e.target, e.target) for e in endpoint.cache.entries() if e.target not in pinned]
    return JSONResponse({"models": models})


def _target(request: Request) -> str:
    name = request.path_params["name"]
    target = _names(request).get(name)
    if target is None:
        raise ModelNotLoaded(f"Model {name} is not loaded.")
    return target


async def describe_model(request: Request) -> Response:
    """``GET /models/{name}``."""
    target = _target(request)
    return JSONResponse([_describe(primary_endpoint(request), request.path_params["name"], target)])


async def delete_model(request: Request) -> Response:
    """``DELETE /models/{name}``: unpin and unload."""
    request.app.state.guard.change(request.scope, b"")
    target = _target(request)
    del _names(request)[request.path_params["name"]]
    endpoint = primary_endpoint(request)
    if target not in _names(request).values():
        endpoint.cache.unpin(target)
        endpoint.cache.unload(target)
    return JSONResponse({"status": f"Model {request.path_params['name']} unloaded."})


class _InvokeModel:
    """``POST /models/{name}/invoke``: raw ASGI, like every invocation route."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            target = _target(request)
        except ModelNotLoaded as exc:
            await failure(exc).response()(scope, receive, send)
            return
        guard: Guard = request.app.state.guard
        await respond(primary_endpoint(request), scope, receive, send, target, guard.invocation if guard.keys else None)


invoke_model = _InvokeModel()

"""The Open Inference Protocol (KServe V2) over REST, on the same server and cache.

Routes: ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET
/v2/health/ready``, ``GET /v2/models/{name}`` (metadata), ``GET
/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``, and the repository
extension: ``POST /v2/repository/index``, ``POST
/v2/repository/models/{name}/load`` and ``.../unload``.

``{name}`` is the target model, the artifact's path under the store prefix, with or
without its slashes percent-encoded. Like the SageMaker route, a first infer (or a
metadata request) loads the model on demand; ``load`` also pins it until
``unload``. The index lists the models this instance holds or is loading: the store
is the repository, and it is not enumerated (it may hold 100,000s of artifacts).

Tensors are ``FP16``/``FP32``/``FP64``, signed and unsigned integers, ``BOOL`` and
``BYTES``, given as JSON ``data`` or with the binary tensor data extension
(``Inference-Header-Content-Length``; what tritonclient sends by default). Errors
take V2's shape, ``{"error": "..."}``, with the HTTP status of the modelyard error.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.errors import (
    ModelError,
    ModelNotLoaded,
    ModelyardError,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationError,
)
from modelyard.handlers import Model, TensorSpec
from modelyard.logs import REQUEST_ID, new_request_id
from modelyard.server import tensors
from modelyard.server.body import read_body
from modelyard.server.context import primary_endpoint
from modelyard.server.responses import request_id

__all__ = ["routes"]

log = logging.getLogger("modelyard.server")

RouteHandler = Callable[[Request], Awaitable[Response]]


def _error(message: str, status: int) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _v2(handler: RouteHandler) -> RouteHandler:
    """Errors in V2's shape: ``{"error": ...}`` with the modelyard error's status."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ModelyardError as exc:
            return _error(exc.message, exc.status)
        except ClientDisconnect:
            raise  # nobody to answer: the app's handler ends it quietly
        except Exception:
            log.exception("internal failure on %s %s", request.method, request.url.path)
            return _error("An internal error occurred; see the server log.", 500)

    return wrapped


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": tensors.datatype(spec.dtype), "shape": list(spec.shape)}


# -- request -------------------------------------------------------------------


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    body = await read_body(request.stream(), limit, int(declared) if declared.isdigit() else None)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ValidationError(f"The body is not valid {encoding} data: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes once decompressed.")
    return body


def _infer(model: Model, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    try:
        return model.infer(inputs, outputs)
    except ModelyardError:
        raise
    except Exception as exc:  # the model's own code failed
        raise ModelError(f"{type(exc).__name__}: {exc}", original_status=500) from exc


# -- routes --------------------------------------------------------------------


def _target(request: Request) -> str:
    return validate_target(request.path_params["name"])


async def server_metadata(request: Request) -> Response:
    """``GET /v2``: name, version and extensions."""
    try:
        release = version("modelyard")
    except PackageNotFoundError:
        release = "unknown"
    return JSONResponse(
        {"name": "modelyard", "version": release, "extensions": ["model_repository", "binary_tensor_data"]}
    )


async def live(request: Request) -> Response:
    """``GET /v2/health/live``: the process answers."""
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    """``GET /v2/health/ready``: serving (503 while shutting down)."""
    if primary_endpoint(request).closing:
        raise ServiceUnavailable("The endpoint is shutting down.")
    return JSONResponse({"ready": True})


async def model_ready(request: Request) -> Response:
    """``GET /v2/models/{name}/ready``: 200 when the model is in memory, 400 otherwise."""
    target = _target(request)
    if primary_endpoint(request).cache.get(target) is None:
        return _error(f"Model '{target}' is not loaded.", 400)
    return JSONResponse({"name": target, "ready": True})


async def model_metadata(request: Request) -> Response:
    """``GET /v2/models/{name}``: inputs and outputs, loading the model if needed."""
    target = _target(request)
    async with primary_endpoint(request).cache.use(target) as entry:
        inputs, outputs = entry.model.signature()
        return JSONResponse(
            {
                "name": target,
                "versions": [entry.version],
                "platform": entry.model.handler,
                "inputs": [_spec(s) for s in inputs],
                "outputs": [_spec(s) for s in outputs],
            }
        )


async def infer(request: Request) -> Response:
    """``POST /v2/models/{name}/infer``: counted and timed like an invocation."""
    started = time.perf_counter()
    REQUEST_ID.set(new_request_id())  # the same id in the response, the logs and the error records
    endpoint = primary_endpoint(request)
    target = request.path_params["name"]
    try:
        response, model_seconds = await _run(request, endpoint)
    except ClientDisconnect:
        raise  # the request never fully arrived: not an invocation
    except Exception as exc:
        if isinstance(exc, ModelyardError):
            status, code, message = exc.status, exc.code, exc.message
        else:
            log.exception("internal failure on V2 infer %s", request.url.path)
            status, code, message = 500, "InternalFailure", "An internal error occurred; see the server log."
        endpoint.metrics.refused(target, status, code, message, request_id())
        return _error(message, status)
    endpoint.metrics.invoked(target, model_seconds, time.perf_counter() - started)
    return response


def _parse(body: bytes, header_length: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bool]]:
    doc, binary = tensors.split(body, header_length)
    return doc, tensors.parse_inputs(doc, binary), tensors.requested_outputs(doc)


def _answer(
    doc: dict[str, Any], target: str, model_version: str, results: dict[str, Any], wanted: dict[str, bool]
) -> Response:
    default = bool(tensors.parameters(doc, "the request").get("binary_data_output", False))
    answer: dict[str, Any] = {"model_name": target, "model_version": model_version}
    if "id" in doc:
        answer["id"] = doc["id"]
    content, headers = tensors.encode_response(answer, results, wanted, default)
    media = "application/octet-stream" if headers else "application/json"
    return Response(content, headers=headers, media_type=media)


async def _run(request: Request, endpoint: Endpoint) -> tuple[Response, float]:
    if endpoint.closing:
        raise ServiceUnavailable("The endpoint is shutting down.")
    if endpoint.inflight >= endpoint.settings.max_inflight:
        raise ServiceUnavailable(f"The endpoint is at its limit of {endpoint.settings.max_inflight} requests.")
    target = _target(request)
    body = await _body(request, endpoint.settings.max_payload)
    header_length = request.headers.get(tensors.HEADER_LENGTH)
    if not endpoint.is_large(body):
        doc, inputs, wanted = _parse(body, header_length)
        endpoint.inflight += 1
        try:
            async with endpoint.cache.use(target) as entry:
                model, model_version = entry.model, entry.version
                clock = time.perf_counter()
                if model.threaded:
                    results = await asyncio.to_thread(_infer, model, inputs, list(wanted))
                else:
                    results = _infer(model, inputs, list(wanted))
                model_seconds = time.perf_counter() - clock
        finally:
            endpoint.inflight -= 1
        return _answer(doc, target, model_version, results, wanted), model_seconds
    # A large body is parsed, run and answered on a worker thread, in the endpoint's turns for large
    # requests, as on the SageMaker route; its model is loaded (or found) between the two turns.
    endpoint.large.check()
    waiting_since = time.monotonic()
    async with endpoint.large.turn(endpoint.remaining_wait(waiting_since)):
        doc, inputs, wanted = await asyncio.to_thread(_parse, body, header_length)
    endpoint.inflight += 1
    try:
        async with endpoint.cache.use(target) as entry:
            model, model_version = entry.model, entry.version
            async with endpoint.large.turn(endpoint.remaining_wait(waiting_since)):
                clock = time.perf_counter()
                results = await asyncio.to_thread(_infer, model, inputs, list(wanted))
                model_seconds = time.perf_counter() - clock
                response = await asyncio.to_thread(_answer, doc, target, model_version, results, wanted)
    finally:
        endpoint.inflight -= 1
    return response, model_seconds


async def repository_index(request: Request) -> Response:
    """``POST /v2/repository/index``: resident models (READY) and loads under way (LOADING)."""
    doc = tensors.json_part(await _body(request, 65536), "index request")
    only_ready = isinstance(doc, dict) and bool(doc.get("ready", False))
    cache = primary_endpoint(request).cache
    models: list[dict[str, Any]] = [
        {"name": e.target, "version": e.version, "state": "READY", "reason": ""}
        for e in sorted(cache.entries(), key=lambda e: e.target)
    ]
    if not only_ready:
        models += [{"name": t, "state": "LOADING", "reason": "loading"} for t in sorted(cache.loading())]
    return JSONResponse(models)


async def load(request: Request) -> Response:
    """``POST /v2/repository/models/{name}/load``: load and pin until ``unload``."""
    request.app.state.guard.change(request.scope, await _body(request, 65536))
    await primary_endpoint(request).cache.pin(_target(request))
    return JSONResponse({})


async def unload(request: Request) -> Response:
    """``POST /v2/repository/models/{name}/unload``: unpin and unload (404 when not loaded)."""
    request.app.state.guard.change(request.scope, await _body(request, 65536))
    target = _target(request)
    cache = primary_endpoint(request).cache
    if cache.get(target) is None:
        raise ModelNotLoaded(f"Model '{target}' is not loaded.")
    cache.unpin(target)
    cache.unload(target)
    return JSONResponse({})


def routes() -> list[Route]:
    """Every V2 route, most specific first (a model name may contain slashes)."""
    return [
        Route("/v2", _v2(server_metadata), methods=["GET"]),
        Route("/v2/health/live", _v2(live), methods=["GET"]),
        Route("/v2/health/ready", _v2(ready), methods=["GET"]),
        Route("/v2/repository/index", _v2(repository_index), methods=["POST"]),
        Route("/v2/repository/models/{name:path}/load", _v2(load), methods=["POST"]),
        Route("/v2/repository/models/{name:path}/unload", _v2(unload), methods=["POST"]),
        Route("/v2/models/{name:path}/ready", _v2(model_ready), methods=["GET"]),
        Route("/v2/models/{name:path}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name:path}", _v2(model_metadata), methods=["GET"]),
    ]

"""The Open Inference Protocol (KServe V2) over REST, on the same server and cache.

Routes: ``GET /v2`` (server metadata), ``GET /v2/health/live``, ``GET
/v2/health/ready``, ``GET /v2/models/{name}`` (metadata), ``GET
/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``, the repository
extension: ``POST /v2/repository/index``, ``POST
/v2/repository/models/{name}/load`` and ``.../unload``, and the statistics and model
configuration extensions tritonclient calls (:mod:`modelyard.server.v2_extensions`).

Every route serves the default endpoint at ``/v2/...`` and any endpoint at
``/endpoints/{endpoint}/v2/...`` (tritonclient: ``url="host:port/endpoints/NAME"``);
a request goes to the instance that serves its model, as an invocation does.

``{name}`` is the target model, the artifact's path under the store prefix, with or
without its slashes percent-encoded. Like the SageMaker route, a first infer (or a
metadata request) loads the model on demand; ``load`` also pins it until
``unload``. The index lists the models the endpoint's instances hold or are loading:
the store is the repository, and it is not enumerated (it may hold 100,000s of
artifacts).

Tensors are ``FP16``/``FP32``/``FP64``, signed and unsigned integers, ``BOOL`` and
``BYTES``, given as JSON ``data`` or with the binary tensor data extension
(``Inference-Header-Content-Length``; what tritonclient sends by default). Errors
take V2's shape, ``{"error": "..."}``, with the HTTP status of the modelyard error.
"""

from __future__ import annotations

import functools
import time
import zlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from modelyard.artifacts import validate_target
from modelyard.endpoint import Endpoint
from modelyard.entries import Entry
from modelyard.errors import ModelNotLoaded, PayloadTooLarge, ServiceUnavailable, ValidationError
from modelyard.handlers import TensorSpec
from modelyard.logs import REQUEST_ID, new_request_id
from modelyard.server import tensors, v2_extensions
from modelyard.server.body import read_body
from modelyard.server.context import served
from modelyard.server.headers import headers_of
from modelyard.server.responses import failure, request_id, v2_error_response

__all__ = ["routes"]

Parsed = tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bool]]


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": tensors.datatype(spec.dtype), "shape": list(spec.shape)}


async def _body(request: Request, limit: int) -> bytes:
    body = await read_body(request.stream(), limit, headers_of(request.scope).content_length)
    encoding = (headers_of(request.scope).get("content-encoding") or "").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise ValidationError(f"The body is not valid {encoding} data: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes once decompressed.")
    return body


def _target(request: Request) -> str:
    return validate_target(request.path_params["name"])


def _instance(request: Request, target: str | None) -> Endpoint:
    return served(request).route(target, headers_of(request.scope).variant)


# -- server --------------------------------------------------------------------


async def server_metadata(request: Request) -> Response:
    """``GET /v2``: name, version and extensions."""
    try:
        release = version("modelyard")
    except PackageNotFoundError:
        release = "unknown"
    extensions = ["model_repository", "binary_tensor_data", "statistics", "model_configuration"]
    return JSONResponse({"name": "modelyard", "version": release, "extensions": extensions})


async def live(request: Request) -> Response:
    """``GET /v2/health/live``: the process answers."""
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    """``GET /v2/health/ready``: serving (503 while shutting down)."""
    if any(instance.closing for instance in served(request).instances()):
        raise ServiceUnavailable("The endpoint is shutting down.")
    return JSONResponse({"ready": True})


# -- models --------------------------------------------------------------------


async def model_ready(request: Request) -> Response:
    """``GET /v2/models/{name}/ready``: 200 when the model is in memory, 400 otherwise."""
    target = _target(request)
    if _instance(request, target).cache.get(target) is None:
        return v2_error_response(f"Model '{target}' is not loaded.", 400)
    return JSONResponse({"name": target, "ready": True})


async def model_metadata(request: Request) -> Response:
    """``GET /v2/models/{name}``: inputs and outputs, loading the model if needed."""
    target = _target(request)
    async with _instance(request, target).cache.use(target) as entry:
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


def _parse(body: bytes, header_length: str | None) -> Parsed:
    doc, binary = tensors.split(body, header_length)
    return doc, tensors.parse_inputs(doc, binary), tensors.requested_outputs(doc)


def _infer(parsed: Parsed | None, body: bytes, header_length: str | None, entry: Entry) -> Response:
    """One infer's work on ``entry``'s model: parse (when not done already), run, answer."""
    doc, inputs, wanted = parsed if parsed is not None else _parse(body, header_length)
    results = entry.model.infer(inputs, list(wanted))
    default = bool(tensors.parameters(doc, "the request").get("binary_data_output", False))
    answer: dict[str, Any] = {"model_name": entry.target, "model_version": entry.version}
    if "id" in doc:
        answer["id"] = doc["id"]
    content, headers = tensors.encode_response(answer, results, wanted, default)
    media = "application/octet-stream" if headers else "application/json"
    return Response(content, headers=headers, media_type=media)


async def infer(request: Request) -> Response:
    """``POST /v2/models/{name}/infer``: counted and timed like an invocation.

    A small body is parsed before its model is looked for (a malformed request loads
    nothing); a large one is parsed, run and answered on a worker thread, in turns.
    """
    started = time.perf_counter()
    REQUEST_ID.set(new_request_id())  # the same id in the response, the logs and the error records
    target: str | None = request.path_params["name"]
    try:
        instance = _instance(request, target)
    except Exception as exc:  # noqa: BLE001 - an unknown endpoint is answered like any error
        return failure(exc).v2_response()
    try:
        target = _target(request)
        body = await _body(request, instance.settings.max_payload)
        header_length = headers_of(request.scope).get(tensors.HEADER_LENGTH)
        parsed = None if instance.is_large(len(body)) else _parse(body, header_length)
        outcome = await instance.run(target, len(body), functools.partial(_infer, parsed, body, header_length))
    except ClientDisconnect:
        raise  # the request never fully arrived: not an invocation
    except Exception as exc:  # noqa: BLE001 - every failure is answered and counted
        found = failure(exc, f"V2 infer {request.url.path}")
        instance.metrics.refused(target, found.status, found.code, found.message, request_id())
        return found.v2_response()
    instance.metrics.invoked(target, outcome.model_seconds, time.perf_counter() - started)
    return outcome.value


# -- repository ----------------------------------------------------------------


async def repository_index(request: Request) -> Response:
    """``POST /v2/repository/index``: resident models (READY) and loads under way (LOADING)."""
    doc = tensors.json_part(await _body(request, 65536), "index request")
    only_ready = isinstance(doc, dict) and bool(doc.get("ready", False))
    caches = [instance.cache for instance in served(request).instances()]
    models: list[dict[str, Any]] = [
        {"name": e.target, "version": e.version, "state": "READY", "reason": ""}
        for e in sorted((e for cache in caches for e in cache.entries()), key=lambda e: e.target)
    ]
    if not only_ready:
        loading = sorted(t for cache in caches for t in cache.loading())
        models += [{"name": t, "state": "LOADING", "reason": "loading"} for t in loading]
    return JSONResponse(models)


async def load(request: Request) -> Response:
    """``POST /v2/repository/models/{name}/load``: load and pin until ``unload``."""
    request.app.state.guard.change(request.scope, await _body(request, 65536))
    target = _target(request)
    await _instance(request, target).cache.pin(target)
    return JSONResponse({})


async def unload(request: Request) -> Response:
    """``POST /v2/repository/models/{name}/unload``: unpin and unload (404 when not loaded)."""
    request.app.state.guard.change(request.scope, await _body(request, 65536))
    target = _target(request)
    cache = _instance(request, target).cache
    if cache.get(target) is None:
        raise ModelNotLoaded(f"Model '{target}' is not loaded.")
    cache.unpin(target)
    cache.unload(target)
    return JSONResponse({})


def _routes() -> list[BaseRoute]:
    """Every V2 route under ``/v2``, most specific first (a model name may contain slashes)."""
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name:path}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{name:path}/unload", unload, methods=["POST"]),
        *v2_extensions.routes(),
        Route("/v2/models/{name:path}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name:path}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name:path}", model_metadata, methods=["GET"]),
    ]


@functools.cache
def routes() -> list[BaseRoute]:
    """The V2 routes for the default endpoint, and under ``/endpoints/{endpoint}`` for any endpoint."""
    return [*_routes(), Mount("/endpoints/{endpoint}", routes=_routes())]

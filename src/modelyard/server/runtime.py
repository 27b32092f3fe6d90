"""The SageMaker runtime API: ``POST /endpoints/{EndpointName}/invocations``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from modelyard.endpoint import Endpoint
from modelyard.errors import EndpointNotFound, ModelyardError, PayloadTooLarge
from modelyard.server.responses import request_id

__all__ = ["TARGET_HEADER", "invoke_response", "read_body"]

TARGET_HEADER = "x-amzn-sagemaker-target-model"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them when possible."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes.")
    if declared is not None:
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def invoke_response(endpoint: Endpoint, request: Request, target: str | None) -> Response:
    """Run one invocation and build its response, counting it in the metrics."""
    started = time.perf_counter()
    metrics = endpoint.metrics
    try:
        body = await read_body(request, endpoint.settings.max_payload)
        headers = request.headers
        prediction = await endpoint.invoke(target, body, headers.get("content-type"), headers.get("accept"))
    except ModelyardError as exc:
        metrics.count_status(exc.status)
        raise
    except Exception:
        metrics.count_status(500)
        raise
    metrics.count_status(200)
    metrics.model_latency.observe(prediction.model_seconds)
    metrics.overhead_latency.observe(max(time.perf_counter() - started - prediction.model_seconds, 0.0))
    return Response(
        prediction.body,
        media_type=prediction.content_type,
        headers={"X-Amzn-Invoked-Production-Variant": endpoint.variant, "x-amzn-RequestId": request_id()},
    )


async def invocations(request: Request) -> Response:
    """``InvokeEndpoint``: the endpoint in the path, the model in the target header."""
    endpoint: Endpoint = request.app.state.endpoint
    name = request.path_params["name"]
    if name != endpoint.name:
        raise EndpointNotFound(f"Endpoint {name} of account 000000000000 not found.")
    return await invoke_response(endpoint, request, request.headers.get(TARGET_HEADER))

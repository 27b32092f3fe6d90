"""The control-plane route: ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>`` (JSON 1.1)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from modelyard.control.service import ControlService
from modelyard.errors import ControlValidation
from modelyard.server.body import read_body
from modelyard.server.guard import Guard
from modelyard.server.headers import headers_of
from modelyard.server.responses import request_id

__all__ = ["MAX_BODY", "control_api"]

CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY = 1024 * 1024
"""Largest control-plane request: SageMaker's own requests are a few KiB (100 tags, 100 environment keys)."""


def _service(request: Request) -> ControlService:
    service: ControlService | None = request.app.state.control
    if service is None:
        raise ControlValidation("The control plane is turned off on this server (control = false).")
    return service


async def control_api(request: Request) -> Response:
    """Run one SageMaker control-plane operation."""
    service = _service(request)
    target = headers_of(request.scope).get("x-amz-target") or ""
    prefix, _, operation = target.partition(".")
    if prefix != "SageMaker" or not operation:
        raise ControlValidation(f"Unknown X-Amz-Target '{target[:200]}': expected SageMaker.<Operation>.")
    body = await read_body(request.stream(), MAX_BODY, headers_of(request.scope).content_length, ControlValidation)
    guard: Guard = request.app.state.guard
    key = guard.control(request.scope, body, operation)
    try:
        document = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: a body nested beyond the parser's stack
        raise ControlValidation(f"The request body is not JSON the server can read: {str(exc)[:200]}") from exc
    if not isinstance(document, dict):
        raise ControlValidation("The request body must be a JSON object.")
    result = await service.plane.call(operation, document, key)
    return Response(json.dumps(result), media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id()})

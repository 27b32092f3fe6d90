"""The control-plane route: ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>`` (JSON 1.1)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from modelyard.control.auth import Verifier
from modelyard.control.service import ControlService
from modelyard.errors import ControlValidation
from modelyard.server.responses import request_id

__all__ = ["control_api"]

CONTENT_TYPE = "application/x-amz-json-1.1"


def _service(request: Request) -> ControlService:
    service: ControlService | None = request.app.state.control
    if service is None:
        raise ControlValidation("The control plane is turned off on this server (control = false).")
    return service


async def control_api(request: Request) -> Response:
    """Run one SageMaker control-plane operation."""
    service = _service(request)
    target = request.headers.get("x-amz-target", "")
    prefix, _, operation = target.partition(".")
    if prefix != "SageMaker" or not operation:
        raise ControlValidation(f"Unknown X-Amz-Target '{target}': expected SageMaker.<Operation>.")
    body = await request.body()
    if service.verifier:
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.scope["headers"]}
        raw_path = request.scope.get("raw_path", b"/").decode("latin-1")
        query = request.scope.get("query_string", b"").decode("latin-1")
        key = service.verifier.verify("POST", headers.get("host", ""), raw_path, query, headers, body)
        Verifier.authorize_control(key, operation)
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        raise ControlValidation(f"The request body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ControlValidation("The request body must be a JSON object.")
    result = await service.plane.call(operation, document)
    return Response(json.dumps(result), media_type=CONTENT_TYPE, headers={"x-amzn-RequestId": request_id()})

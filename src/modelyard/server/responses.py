"""Errors to responses, in one place: the AWS error shape botocore understands.

Every error is served with ``x-amzn-ErrorType: <Code>`` and a JSON body
``{"__type": "<Code>", "message": "..."}`` (plus ``OriginalStatusCode`` and
``OriginalMessage`` for a ModelError), so boto3 raises a ``ClientError`` with the
right code. Anything unexpected is an InternalFailure 500 whose message hides
internals; it is logged with its traceback.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.logs import REQUEST_ID, new_request_id

__all__ = [
    "error_body",
    "error_response",
    "handle_disconnect",
    "handle_error",
    "handle_http_error",
    "handle_unexpected",
    "request_id",
]

log = logging.getLogger("modelyard.server")

_HTTP_CODES = {404: "UnknownOperationException", 405: "UnknownOperationException", 413: "ValidationError"}


def request_id() -> str:
    """The id of the request being served (see :mod:`modelyard.logs`), or a new one."""
    return REQUEST_ID.get() or new_request_id()


def error_body(code: str, message: str, extra: dict[str, object] | None = None) -> bytes:
    """The AWS-shaped JSON body of an error."""
    return json.dumps({"__type": code, "message": message, **(extra or {})}).encode()


def error_response(code: str, status: int, message: str, extra: dict[str, object] | None = None) -> Response:
    """The AWS-shaped error response."""
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()}
    body = error_body(code, message, extra)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for :class:`ModelyardError`."""
    assert isinstance(exc, ModelyardError)
    return error_response(exc.code, exc.status, exc.message, exc.extra())


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for routing errors (unknown path, wrong method)."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "ValidationError")
    return error_response(code, exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")


async def handle_disconnect(request: Request, exc: Exception) -> Response:
    """Starlette handler for a client gone before its body arrived (or closed for being too slow).

    Nobody reads the answer; this only keeps it from being taken for a server error.
    """
    assert isinstance(exc, ClientDisconnect)
    log.debug("client gone before its request arrived: %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: a bug, never bad input."""
    log.error("internal failure on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response("InternalFailure", 500, "An internal error occurred; see the server log.")

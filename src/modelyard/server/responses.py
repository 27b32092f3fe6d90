"""Errors to responses, in one place: the AWS error shape botocore understands, and V2's.

:func:`failure` is the one mapping from an exception to what the client is told. Every
error is served with ``x-amzn-ErrorType: <Code>`` and a JSON body
``{"__type": "<Code>", "message": "..."}`` (plus ``OriginalStatusCode`` and
``OriginalMessage`` for a ModelError), so boto3 raises a ``ClientError`` with the
right code; the Open Inference Protocol's routes answer V2's ``{"error": "..."}``
with the same status. Anything unexpected is an InternalFailure 500 whose message
hides internals; it is logged with its traceback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.logs import REQUEST_ID, new_request_id

__all__ = [
    "Failure",
    "error_body",
    "error_response",
    "failure",
    "handle_disconnect",
    "handle_error",
    "handle_http_error",
    "handle_unexpected",
    "request_id",
    "v2_error_response",
]

log = logging.getLogger("modelyard.server")

_HTTP_CODES = {404: "UnknownOperationException", 405: "UnknownOperationException", 413: "ValidationError"}


def request_id() -> str:
    """The id of the request being served (see :mod:`modelyard.logs`), or a new one."""
    return REQUEST_ID.get() or new_request_id()


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client is told of an error."""

    status: int
    code: str
    message: str
    extra: dict[str, object]

    def response(self) -> Response:
        """The AWS-shaped response."""
        return error_response(self.code, self.status, self.message, self.extra)

    def v2_response(self) -> Response:
        """The Open Inference Protocol's response."""
        return v2_error_response(self.message, self.status)


_INTERNAL = "An internal error occurred; see the server log."


def failure(exc: BaseException, where: str = "") -> Failure:
    """The client's view of ``exc``: a :class:`ModelyardError` as it says, anything else a
    logged InternalFailure (``where`` names the request in the log)."""
    if isinstance(exc, ModelyardError):
        return Failure(exc.status, exc.code, exc.message, exc.extra())
    log.error("internal failure on %s", where or "a request", exc_info=exc)
    return Failure(500, "InternalFailure", _INTERNAL, {})


def v2_error_response(message: str, status: int) -> Response:
    """The Open Inference Protocol's error: ``{"error": ...}`` with the status."""
    return Response(json.dumps({"error": message}), status_code=status, media_type="application/json")


def error_body(code: str, message: str, extra: dict[str, object] | None = None) -> bytes:
    """The AWS-shaped JSON body of an error."""
    return json.dumps({"__type": code, "message": message, **(extra or {})}).encode()


def error_response(code: str, status: int, message: str, extra: dict[str, object] | None = None) -> Response:
    """The AWS-shaped error response."""
    headers = {"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()}
    body = error_body(code, message, extra)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette handler for :class:`ModelyardError` (V2's shape on the V2 routes)."""
    found = failure(exc)
    return found.v2_response() if "/v2" in request.url.path else found.response()


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
    found = failure(exc, f"{request.method} {request.url.path}")
    return found.v2_response() if "/v2" in request.url.path else found.response()

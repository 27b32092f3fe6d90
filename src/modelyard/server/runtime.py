"""The invocation routes, served as raw ASGI: the hot path of every endpoint.

``POST /endpoints/{EndpointName}/invocations`` (SageMaker runtime), ``POST
/invocations`` (container contract) and ``POST /models/{name}/invoke`` all run
:func:`respond`. The first two are answered before the Starlette router is reached
(:class:`InvocationsApp`): a request costs a header scan, the body, the model and
one response, without per-request framework objects. Errors take the same AWS
shape as everywhere else (:mod:`modelyard.server.responses`). Besides SageMaker's
headers, a response says whether its model was already in memory
(``X-Modelyard-Cache: hit`` or ``miss``), so load tests can split cold from warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.control.auth import Verifier
from modelyard.control.operations import ACCOUNT
from modelyard.control.service import ControlService
from modelyard.endpoint import Endpoint
from modelyard.errors import AccessDenied, EndpointNotFound, ModelyardError
from modelyard.logs import REQUEST_ID, new_request_id
from modelyard.server.body import ClientDisconnect, asgi_chunks, read_body
from modelyard.server.context import no_default_endpoint
from modelyard.server.responses import error_response

__all__ = ["TARGET_HEADER", "InvocationsApp", "respond"]

log = logging.getLogger("modelyard.server")

TARGET_HEADER = b"x-amzn-sagemaker-target-model"
ATTRIBUTES_HEADER = b"x-amzn-sagemaker-custom-attributes"
VARIANT_HEADER = b"x-amzn-sagemaker-target-variant"
_OPEN = frozenset({"/", "/ping", "/metrics"})  # "/" is the control plane, which checks signatures itself
_PREFIX = "/endpoints/"
_SUFFIX = "/invocations"


Authorize = Callable[[Scope, bytes, Endpoint, "str | None"], None]


async def respond(
    endpoint: Endpoint,
    scope: Scope,
    receive: Receive,
    send: Send,
    target: str | None = None,
    authorize: Authorize | None = None,
) -> None:
    """Answer one invocation; ``target`` overrides the target model header.

    ``authorize`` checks the request (its signature covers the body) before the model runs.
    """
    started = time.perf_counter()
    rid = new_request_id()
    # Lines logged while serving (a load this request starts, a failure) carry the id. No
    # reset needed: the ASGI server runs each request in its own task, with its own context.
    REQUEST_ID.set(rid)
    content_type = accept = attributes = None
    declared: int | None = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == TARGET_HEADER:
            if target is None:
                target = value.decode("utf-8", "replace")
        elif name == b"accept":
            accept = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == ATTRIBUTES_HEADER:
            attributes = value.decode("utf-8", "replace")
    try:
        try:
            body = await read_body(asgi_chunks(receive), endpoint.settings.max_payload, declared)
        except ClientDisconnect:
            return
        if authorize is not None:
            authorize(scope, body, endpoint, target)
        prediction = await endpoint.invoke(target, body, content_type, accept, attributes)
    except ModelyardError as exc:
        await _refuse(endpoint, scope, receive, send, rid, target, exc, started)
        return
    except Exception as exc:
        log.exception("internal failure invoking %r", target)
        await _refuse(endpoint, scope, receive, send, rid, target, exc, started)
        return
    headers = [
        (b"content-type", prediction.content_type.encode("latin-1")),
        (b"content-length", str(len(prediction.body)).encode("latin-1")),
        (b"x-amzn-invoked-production-variant", endpoint.variant_header),
        (b"x-amzn-requestid", rid.encode("latin-1")),
        (b"x-modelyard-cache", b"hit" if prediction.cache_hit else b"miss"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": prediction.body})
    seconds = time.perf_counter() - started
    endpoint.metrics.invoked(target, prediction.model_seconds, seconds)
    if endpoint.request_log.sample:
        endpoint.request_log.write(
            rid,
            target,
            200,
            seconds,
            model_seconds=prediction.model_seconds,
            request_bytes=len(body),
            response_bytes=len(prediction.body),
        )


async def _refuse(
    endpoint: Endpoint,
    scope: Scope,
    receive: Receive,
    send: Send,
    rid: str,
    target: str | None,
    exc: Exception,
    started: float,
) -> None:
    """Answer with the error's AWS shape, under the request's id, and count it."""
    if isinstance(exc, ModelyardError):
        code, status, message, extra = exc.code, exc.status, exc.message, exc.extra()
    else:
        code, status, message, extra = "InternalFailure", 500, "An internal error occurred; see the server log.", {}
    endpoint.metrics.refused(target, status, code, message, rid)
    response = error_response(code, status, message, extra)
    response.headers["x-amzn-RequestId"] = rid
    await response(scope, receive, send)
    if endpoint.request_log.sample:
        endpoint.request_log.write(rid, target, status, time.perf_counter() - started, code=code)


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    host = client[0] if client else ""
    return bool(host.startswith("127.") or host in ("::1", "localhost"))


class InvocationsApp:
    """Serves the SageMaker invocation routes itself and hands every other request to ``app``.

    ``/endpoints/{name}/invocations`` goes to the default endpoint when ``name`` is
    its name, else to the control plane's deployment of that name (variant by
    ``X-Amzn-SageMaker-Target-Variant`` or weight, instance by model affinity).
    With access keys configured, invocations must be signed (SigV4), and the routes
    that are not SageMaker's own (container, V2, stats, dashboard) answer loopback
    clients only; ``/ping`` and ``/metrics`` stay open.
    """

    def __init__(self, app: ASGIApp, endpoint: Endpoint | None, control: ControlService | None = None) -> None:
        self.app = app
        self.endpoint = endpoint
        self.control = control
        self._authorize: Authorize | None = self._check if control is not None and control.verifier else None

    def _check(self, scope: Scope, body: bytes, endpoint: Endpoint, target: str | None) -> None:
        assert self.control is not None
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        raw_path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        key = self.control.verifier.verify(scope["method"], headers.get("host", ""), raw_path, query, headers, body)
        Verifier.authorize_invoke(key, endpoint.name, target)

    def _route(self, name: str, scope: Scope) -> Endpoint | None:
        if self.endpoint is not None and name == self.endpoint.name:
            return self.endpoint
        deployment = self.control.registry.get(name) if self.control is not None else None
        if deployment is None:
            return None
        target = variant = None
        for header, value in scope["headers"]:
            if header == TARGET_HEADER:
                target = value.decode("utf-8", "replace")
            elif header == VARIANT_HEADER:
                variant = value.decode("utf-8", "replace")
        return deployment.route(target, variant)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            try:
                if scope["method"] == "POST" and path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                    name = path[len(_PREFIX) : -len(_SUFFIX)]
                    endpoint = self._route(name, scope) if name and "/" not in name else None
                    if endpoint is None:
                        raise EndpointNotFound(f"Endpoint {name} of account {ACCOUNT} not found.")
                    return await respond(endpoint, scope, receive, send, authorize=self._authorize)
                if self._authorize is not None and path not in _OPEN and not _loopback(scope):
                    raise AccessDenied(
                        "Only SageMaker's own routes are served to other hosts when keys are configured."
                    )
                if scope["method"] == "POST" and path == _SUFFIX:
                    if self.endpoint is None:
                        raise no_default_endpoint()
                    return await respond(self.endpoint, scope, receive, send, authorize=self._authorize)
            except ModelyardError as error:
                return await error_response(error.code, error.status, error.message, error.extra())(
                    scope, receive, send
                )
        await self.app(scope, receive, send)

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

from modelyard.control.operations import ACCOUNT
from modelyard.endpoint import Endpoint
from modelyard.errors import EndpointNotFound, ModelyardError
from modelyard.logs import REQUEST_ID, new_request_id
from modelyard.server.body import ClientDisconnect, asgi_chunks, read_body
from modelyard.server.context import Endpoints, no_default_endpoint
from modelyard.server.guard import Guard
from modelyard.server.headers import headers_of
from modelyard.server.responses import failure

__all__ = ["InvocationsApp", "respond"]

log = logging.getLogger("modelyard.server")

_PREFIX = "/endpoints/"
_SUFFIX = "/invocations"


Authorize = Callable[[Scope, bytes, str, "str | None"], None]


async def respond(
    endpoint: Endpoint,
    scope: Scope,
    receive: Receive,
    send: Send,
    target: str | None = None,
    authorize: Authorize | None = None,
) -> None:
    """Answer one invocation; ``target`` overrides the target model header.

    ``authorize(scope, body, endpoint name, target)`` checks the request (its signature
    covers the body) before the model runs.
    """
    started = time.perf_counter()
    rid = new_request_id()
    # Lines logged while serving (a load this request starts, a failure) carry the id. No
    # reset needed: the ASGI server runs each request in its own task, with its own context.
    REQUEST_ID.set(rid)
    try:
        headers = headers_of(scope)
        if target is None:
            target = headers.target
        try:
            body = await read_body(asgi_chunks(receive), endpoint.settings.max_payload, headers.content_length)
        except ClientDisconnect:
            return
        if authorize is not None:
            authorize(scope, body, endpoint.name, target)
        prediction = await endpoint.invoke(
            target,
            body,
            headers.get("content-type"),
            headers.get("accept"),
            headers.text("x-amzn-sagemaker-custom-attributes"),
        )
    except Exception as exc:  # noqa: BLE001 - every failure is answered, a bug as an InternalFailure
        await _refuse(endpoint, scope, receive, send, rid, target, exc, started)
        return
    answer = [
        (b"content-type", prediction.content_type.encode("latin-1")),
        (b"content-length", str(len(prediction.body)).encode("latin-1")),
        (b"x-amzn-invoked-production-variant", endpoint.variant_header),
        (b"x-amzn-requestid", rid.encode("latin-1")),
        (b"x-modelyard-cache", b"hit" if prediction.cache_hit else b"miss"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": answer})
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
    found = failure(exc, f"invoking {target!r}")
    endpoint.metrics.refused(target, found.status, found.code, found.message, rid)
    response = found.response()
    response.headers["x-amzn-RequestId"] = rid
    await response(scope, receive, send)
    if endpoint.request_log.sample:
        endpoint.request_log.write(rid, target, found.status, time.perf_counter() - started, code=found.code)


class InvocationsApp:
    """Serves the SageMaker invocation routes itself and hands every other request to ``app``.

    ``/endpoints/{name}/invocations`` goes to the default endpoint when ``name`` is
    its name, else to the control plane's deployment of that name (variant by
    ``X-Amzn-SageMaker-Target-Variant`` or weight, instance by model affinity).
    Every request's headers are read here, once (:mod:`modelyard.server.headers`), and
    checked by the server's :class:`~modelyard.server.guard.Guard`.
    """

    def __init__(self, app: ASGIApp, endpoints: Endpoints, guard: Guard) -> None:
        self.app = app
        self.endpoints = endpoints
        self.endpoint = endpoints.default
        self.guard = guard
        self._authorize: Authorize | None = guard.invocation if guard.keys else None

    def _route(self, name: str, scope: Scope) -> Endpoint | None:
        if self.endpoint is not None and name == self.endpoint.name:
            return self.endpoint
        served = self.endpoints.get(name)
        if served is None:
            return None
        headers = headers_of(scope)
        return served.route(headers.target, headers.variant)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            try:
                headers_of(scope)  # a meaningful header given twice is refused before anything reads one
                if scope["method"] == "POST" and path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                    name = path[len(_PREFIX) : -len(_SUFFIX)]
                    endpoint = self._route(name, scope) if name and "/" not in name else None
                    if endpoint is None:
                        raise EndpointNotFound(f"Endpoint {name} of account {ACCOUNT} not found.")
                    return await respond(endpoint, scope, receive, send, authorize=self._authorize)
                self.guard.reachable(scope)
                if scope["method"] == "POST" and path == _SUFFIX:
                    if self.endpoint is None:
                        raise no_default_endpoint()
                    return await respond(self.endpoint, scope, receive, send, authorize=self._authorize)
            except ModelyardError as error:
                return await failure(error).response()(scope, receive, send)
        await self.app(scope, receive, send)

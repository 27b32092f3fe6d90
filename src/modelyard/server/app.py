"""The ASGI application: SageMaker's runtime, container and control APIs, and the Open
Inference Protocol, on one Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.control.auth import Verifier
from modelyard.control.service import ControlService
from modelyard.endpoint import Endpoint
from modelyard.errors import ModelyardError
from modelyard.metrics import CONTENT_TYPE, MetricsHub
from modelyard.server import admin, container, v2
from modelyard.server.context import Endpoints
from modelyard.server.control import control_api
from modelyard.server.dashboard import routes as dashboard_routes
from modelyard.server.guard import Guard
from modelyard.server.responses import handle_disconnect, handle_error, handle_http_error, handle_unexpected
from modelyard.server.runtime import InvocationsApp
from modelyard.server.series import Series
from modelyard.server.startup import announce

__all__ = ["create_app"]


async def metrics(request: Request) -> Response:
    """Prometheus exposition of every endpoint instance's metrics."""
    hub: MetricsHub = request.app.state.hub
    return Response(hub.render(), media_type=CONTENT_TYPE)


def create_app(
    endpoint: Endpoint | None,
    control: ControlService | None = None,
    hub: MetricsHub | None = None,
    guard: Guard | None = None,
) -> InvocationsApp:
    """The server for the default ``endpoint`` and the ``control`` plane's endpoints.

    ``guard`` checks signatures and policies (none: no access keys, anyone on loopback).

    Its lifespan preloads the default endpoint's models, brings the control plane's
    endpoints back, and unloads everything at exit. The invocation routes are
    answered by :class:`InvocationsApp` in front of the Starlette app that serves
    everything else.
    """
    if hub is None:
        hub = MetricsHub()
    if guard is None:
        guard = Guard(Verifier(()))
    if endpoint is not None and endpoint.metrics not in hub.members:
        hub.add(endpoint.metrics)
    series = Series(hub)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if endpoint is not None:
            await endpoint.start()
        series.start()
        if control is not None:
            await control.start()
        check = announce(endpoint, control)
        try:
            yield
        finally:
            if check is not None:
                check.cancel()
            if control is not None:
                await control.close()
            await series.stop()
            if endpoint is not None:
                await endpoint.close()

    routes = [
        Route("/", control_api, methods=["POST"]),
        Route("/ping", container.ping, methods=["GET"]),
        Route("/models", container.load_model, methods=["POST"]),
        Route("/models", container.list_models, methods=["GET"]),
        Route("/models/{name:path}/invoke", container.invoke_model, methods=["POST"]),
        Route("/models/{name:path}", container.describe_model, methods=["GET"]),
        Route("/models/{name:path}", container.delete_model, methods=["DELETE"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/cache", admin.list_cache, methods=["GET"]),
        Route("/cache/{target:path}", admin.invalidate, methods=["DELETE"]),
        Route("/stats", admin.stats_summary, methods=["GET"]),
        Route("/stats/endpoints", admin.endpoints, methods=["GET"]),
        Route("/stats/models", admin.stats_models, methods=["GET"]),
        Route("/stats/models/{target:path}", admin.stats_model, methods=["GET"]),
        *dashboard_routes(),
        *v2.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ModelyardError: handle_error,
            HTTPException: handle_http_error,
            ClientDisconnect: handle_disconnect,
            Exception: handle_unexpected,
        },
    )
    endpoints = Endpoints(endpoint, control)
    app.state.endpoints = endpoints
    app.state.control = control
    app.state.hub = hub
    app.state.guard = guard
    app.state.container_models = {}
    app.state.series = series
    return InvocationsApp(app, endpoints, guard)

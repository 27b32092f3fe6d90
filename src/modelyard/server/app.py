"""The ASGI application: every route of SPEC §2, and the Open Inference Protocol, on one Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.endpoint import Endpoint
from modelyard.errors import ModelyardError
from modelyard.metrics import CONTENT_TYPE
from modelyard.server import admin, container, v2
from modelyard.server.dashboard import Series
from modelyard.server.dashboard import routes as dashboard_routes
from modelyard.server.responses import handle_error, handle_http_error, handle_unexpected
from modelyard.server.runtime import InvocationsApp

__all__ = ["create_app"]


async def metrics(request: Request) -> Response:
    """Prometheus exposition of the endpoint's metrics."""
    endpoint: Endpoint = request.app.state.endpoint
    return Response(endpoint.metrics.render(), media_type=CONTENT_TYPE)


def create_app(endpoint: Endpoint) -> InvocationsApp:
    """The server for ``endpoint``; its lifespan preloads models and unloads them at exit.

    The invocation routes are answered by :class:`InvocationsApp` in front of the
    Starlette app that serves everything else.
    """

    series = Series(endpoint)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await endpoint.start()
        series.start()
        try:
            yield
        finally:
            await series.stop()
            await endpoint.close()

    routes = [
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
            Exception: handle_unexpected,
        },
    )
    app.state.endpoint = endpoint
    app.state.container_models = {}
    app.state.series = series
    return InvocationsApp(app, endpoint)

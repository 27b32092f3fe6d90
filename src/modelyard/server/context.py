"""What the routes share: the server's default endpoint, looked up in one place."""

from __future__ import annotations

from starlette.requests import Request

from modelyard.endpoint import Endpoint
from modelyard.errors import EndpointNotFound

__all__ = ["no_default_endpoint", "primary_endpoint"]


def no_default_endpoint() -> EndpointNotFound:
    """The error of a route that needs the default endpoint on a server without one."""
    return EndpointNotFound(
        "This server has no default endpoint (it was started without a store); "
        "use /endpoints/{name}/invocations of an endpoint created through the control plane."
    )


def primary_endpoint(request: Request) -> Endpoint:
    """The endpoint ``modelyard serve STORE`` serves; the routes that act on it need one."""
    endpoint: Endpoint | None = request.app.state.endpoint
    if endpoint is None:
        raise no_default_endpoint()
    return endpoint

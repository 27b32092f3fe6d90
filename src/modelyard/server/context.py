"""Which endpoint a request names: one lookup for every route and every view.

A server serves a default endpoint (``modelyard serve STORE``) and the endpoints of its
control plane. Invocations name theirs in the path
(``/endpoints/{name}/invocations``); the Open Inference Protocol takes the same
prefix (``/endpoints/{name}/v2/...``, which tritonclient reaches with
``url="host:port/endpoints/{name}"``) or, at ``/v2/...``, the default endpoint; the
views (``/stats``, ``/cache``, the dashboard) take ``?endpoint=NAME`` and, to look at
one variant or instance, ``&variant=V&instance=I``. Without a name, a view shows the
default endpoint, or the only endpoint when the server has a single one.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from modelyard.control.deploy import Deployment
from modelyard.control.resources import ACCOUNT
from modelyard.control.service import ControlService
from modelyard.endpoint import Endpoint
from modelyard.errors import EndpointNotFound, ValidationError

__all__ = ["Endpoints", "Served", "endpoints_of", "no_default_endpoint", "primary_endpoint", "served"]


def no_default_endpoint() -> EndpointNotFound:
    """The error of a route that needs the default endpoint on a server without one."""
    return EndpointNotFound(
        "This server has no default endpoint (it was started without a store); "
        "use /endpoints/{name}/invocations of an endpoint created through the control plane."
    )


@dataclass(frozen=True, slots=True)
class Served:
    """A served endpoint: the default one (a single instance) or a control-plane deployment."""

    name: str
    default: Endpoint | None = None
    deployment: Deployment | None = None

    def instances(self, variant: str | None = None, instance: str | None = None) -> list[Endpoint]:
        """The instances, optionally of one variant and one instance id."""
        everything = [self.default] if self.default is not None else self.deployment.instances()  # type: ignore[union-attr]
        chosen = [
            e
            for e in everything
            if (variant is None or e.variant == variant) and (instance is None or e.settings.instance_id == instance)
        ]
        if not chosen:
            which = f"instance {instance or '*'} of variant {variant or '*'}"
            raise ValidationError(f"Endpoint {self.name} has no {which}.")
        return chosen

    def route(self, target: str | None, variant: str | None = None) -> Endpoint:
        """The instance that serves ``target`` (model affinity; ``variant`` when the caller names one)."""
        if self.default is not None:
            return self.default
        assert self.deployment is not None
        return self.deployment.route(target, variant)


class Endpoints:
    """Every endpoint of one server, by name."""

    def __init__(self, default: Endpoint | None, control: ControlService | None) -> None:
        self.default = default
        self.control = control

    def get(self, name: str) -> Served | None:
        """The endpoint called ``name``, None when this server does not serve it."""
        if self.default is not None and name == self.default.name:
            return Served(name, default=self.default)
        deployment = self.control.registry.get(name) if self.control is not None else None
        return None if deployment is None else Served(name, deployment=deployment)

    def all(self) -> list[Served]:
        """Every served endpoint, the default one first."""
        found = [Served(self.default.name, default=self.default)] if self.default is not None else []
        if self.control is not None:
            deployments = sorted(self.control.registry.all(), key=lambda d: d.name)
            found += [Served(d.name, deployment=d) for d in deployments]
        return found

    def named(self, name: str | None) -> Served:
        """The endpoint ``name``; without a name the default endpoint, or the only one."""
        if name:
            served = self.get(name)
            if served is None:
                raise EndpointNotFound(f"Endpoint {name} of account {ACCOUNT} not found.")
            return served
        if self.default is not None:
            return Served(self.default.name, default=self.default)
        every = self.all()
        if len(every) == 1:
            return every[0]
        if not every:
            raise no_default_endpoint()
        names = ", ".join(s.name for s in every[:20])
        raise ValidationError(f"This server serves several endpoints ({names}): name one with ?endpoint=NAME.")


def endpoints_of(request: Request) -> Endpoints:
    """The server's :class:`Endpoints`."""
    found: Endpoints = request.app.state.endpoints
    return found


def served(request: Request) -> Served:
    """The endpoint a request names: ``/endpoints/{endpoint}/...`` in its path, or ``?endpoint=``."""
    name = request.path_params.get("endpoint") or request.query_params.get("endpoint")
    return endpoints_of(request).named(name)


def primary_endpoint(request: Request) -> Endpoint:
    """The endpoint ``modelyard serve STORE`` serves; the container contract acts on it alone."""
    endpoint: Endpoint | None = endpoints_of(request).default
    if endpoint is None:
        raise no_default_endpoint()
    return endpoint

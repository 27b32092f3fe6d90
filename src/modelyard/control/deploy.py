"""Running endpoints: variants of instances on this host, and the routing between them.

A :class:`Deployment` is what ``CreateEndpoint`` starts
(:class:`~modelyard.control.deployer.EndpointDeployer` builds it): for each production
variant, ``InitialInstanceCount`` instances, each an
:class:`~modelyard.endpoint.Endpoint` with its own cache, memory budget (from the
variant's ``InstanceType``) and metrics, sharing this process. A request picks its
variant by ``TargetVariant`` or by weight, then the instance that owns its target
model (hashed affinity, so a model is loaded on one instance, not all of them).
"""

from __future__ import annotations

import asyncio
import random
import zlib
from dataclasses import dataclass

from modelyard.endpoint import Endpoint
from modelyard.errors import ValidationError

__all__ = ["Deployment", "Registry", "Variant"]


@dataclass
class Variant:
    """A production variant: its weight and its instances."""

    name: str
    weight: float
    instance_type: str
    instances: list[Endpoint]

    def instance_for(self, target: str | None) -> Endpoint:
        """The instance that owns ``target`` (model affinity)."""
        if len(self.instances) == 1 or target is None:
            return self.instances[0]
        return self.instances[zlib.crc32(target.encode()) % len(self.instances)]


@dataclass
class Deployment:
    """A running endpoint."""

    name: str
    variants: list[Variant]

    def route(self, target: str | None, target_variant: str | None = None) -> Endpoint:
        """The instance serving ``target`` (``target_variant`` when the caller names one)."""
        if target_variant:
            for variant in self.variants:
                if variant.name == target_variant:
                    return variant.instance_for(target)
            raise ValidationError(f"Variant {target_variant} not found for endpoint {self.name}.")
        weighted = [v for v in self.variants if v.weight > 0] or self.variants
        if len(weighted) == 1:
            return weighted[0].instance_for(target)
        variant = random.choices(weighted, weights=[v.weight for v in weighted])[0]
        return variant.instance_for(target)

    def instances(self) -> list[Endpoint]:
        """Every instance of every variant."""
        return [instance for variant in self.variants for instance in variant.instances]

    async def close(self) -> None:
        """Let requests in flight finish, then unload everything."""
        await asyncio.gather(*(instance.drain() for instance in self.instances()))


class Registry:
    """The running endpoints by name, shared by the runtime API and the control plane."""

    def __init__(self) -> None:
        self._deployments: dict[str, Deployment] = {}

    def get(self, name: str) -> Deployment | None:
        """The deployment of ``name``, if it runs."""
        return self._deployments.get(name)

    def put(self, deployment: Deployment) -> Deployment | None:
        """Start routing to ``deployment``; returns the one it replaces."""
        previous = self._deployments.get(deployment.name)
        self._deployments[deployment.name] = deployment
        return previous

    def pop(self, name: str) -> Deployment | None:
        """Stop routing to ``name``."""
        return self._deployments.pop(name, None)

    def all(self) -> list[Deployment]:
        """Every running deployment."""
        return list(self._deployments.values())

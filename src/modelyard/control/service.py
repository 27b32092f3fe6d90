"""The control plane of one server: state, running endpoints, authentication."""

from __future__ import annotations

import logging
import os
from typing import Any

from modelyard.control.catalog import Catalog
from modelyard.control.deploy import Registry
from modelyard.control.deployer import EndpointDeployer
from modelyard.control.operations import ControlPlane
from modelyard.errors import ControlValidation
from modelyard.instances import InstanceTable
from modelyard.metrics import MetricsHub
from modelyard.settings import EndpointSpec, Settings

__all__ = ["ControlService"]

log = logging.getLogger("modelyard.control")


def _host_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


class ControlService:
    """Catalog (SQLite in the data folder), deployer and registry, built from settings."""

    def __init__(self, settings: Settings, hub: MetricsHub, *, host_memory: int | None = None) -> None:
        data = settings.data_folder()
        self.catalog = Catalog(data / "control.sqlite3")
        self.registry = Registry()
        table = InstanceTable.load(settings.instance_types)
        memory = host_memory or _host_memory()
        declared = [spec.model_data_url for spec in settings.endpoints]  # the operator's own: allowed folders
        self.deployer = EndpointDeployer(
            settings, self.registry, table, data, host_memory=memory, hub=hub, roots=declared
        )
        self.plane = ControlPlane(self.catalog, self.deployer, region=settings.region)
        self._declared = list(settings.endpoints)

    async def start(self) -> None:
        """Bring persisted endpoints back, then create the declared ones that do not exist."""
        await self.plane.restore()
        for spec in self._declared:
            await self._declare(spec)

    async def _declare(self, spec: EndpointSpec) -> None:
        container: dict[str, Any] = {
            "Image": spec.image,
            "ModelDataUrl": spec.model_data_url,
            "Mode": "MultiModel",
            "Environment": spec.environment,
            "MultiModelConfig": {"ModelCacheSetting": spec.model_cache},
        }
        variant = {
            "VariantName": "AllTraffic",
            "ModelName": spec.name,
            "InstanceType": spec.instance_type,
            "InitialInstanceCount": spec.instance_count,
            "InitialVariantWeight": 1.0,
        }
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("model", "CreateModel", {"ModelName": spec.name, "PrimaryContainer": container}),
            (
                "endpoint_config",
                "CreateEndpointConfig",
                {"EndpointConfigName": spec.name, "ProductionVariants": [variant]},
            ),
            ("endpoint", "CreateEndpoint", {"EndpointName": spec.name, "EndpointConfigName": spec.name}),
        ]
        for kind, operation, body in steps:
            if self.catalog.get(kind, spec.name) is None:
                try:
                    await self.plane.call(operation, body)
                except ControlValidation as exc:
                    log.error("declared endpoint %s: %s", spec.name, exc.message)
                    return

    async def close(self) -> None:
        """Finish background work, stop every endpoint, close the catalog."""
        await self.plane.close()
        for deployment in self.registry.all():
            await deployment.close()
        self.catalog.close()

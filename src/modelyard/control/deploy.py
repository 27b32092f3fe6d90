"""Running endpoints: variants of instances on this host, and the routing between them.

A :class:`Deployment` is what ``CreateEndpoint`` starts: for each production variant,
``InitialInstanceCount`` instances, each an :class:`~modelyard.endpoint.Endpoint`
with its own cache, memory budget (from the variant's ``InstanceType``) and metrics,
sharing this process. A request picks its variant by ``TargetVariant`` or by weight,
then the instance that owns its target model (hashed affinity, so a model is loaded
on one instance, not all of them).

Container fields:

* ``Image`` names the handler: ``auto``, ``xgboost``, ``lightgbm``, ``sklearn``,
  ``onnx``, ``python``, or a SageMaker image URI whose repository names one
  (``…/sagemaker-xgboost:1.7-1`` → ``xgboost``, ``…/sagemaker-scikit-learn:1.2-1`` →
  ``sklearn``). Anything else fails the endpoint with a ``FailureReason``.
* ``ModelDataUrl`` is the store prefix; it must exist and be readable.
* ``Environment`` keys ``MODELYARD_<SETTING>`` set that instance setting
  (``MODELYARD_TRUST_STORE=true``, ``MODELYARD_EVICTION=lru``...).
* ``MultiModelConfig.ModelCacheSetting`` ``Enabled``/``Disabled`` is honoured.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError as SettingsError

from modelyard.endpoint import Endpoint
from modelyard.errors import ModelyardError, ValidationError
from modelyard.handlers import HANDLERS
from modelyard.metrics import MetricsHub
from modelyard.planner import GIB, InstanceTable
from modelyard.settings import Settings
from modelyard.store import Store, open_store

__all__ = ["Deployment", "EndpointDeployer", "Registry", "Variant", "framework_for_image"]

_ALIASES = {"scikit-learn": "sklearn", "sklearn": "sklearn", "onnxruntime": "onnx", "lgbm": "lightgbm"}


def framework_for_image(image: str | None) -> str:
    """The handler an ``Image`` names (see module doc)."""
    if not image or image == "auto":
        return "auto"
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()
    for prefix in ("sagemaker-", "modelyard-"):
        repository = repository.removeprefix(prefix)
    for suffix in ("-inference", "-cpu", "-gpu"):
        repository = repository.removesuffix(suffix)
    name = _ALIASES.get(repository, repository)
    if name in HANDLERS:
        return name
    known = ", ".join(["auto", *sorted(HANDLERS)])
    raise ValidationError(f"Image '{image}' names no handler this server has; use one of {known}.")


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


async def _open_existing_store(url: str, options: dict[str, str]) -> Store:
    """The store at ``url``, which must exist and be readable (a folder is not created)."""
    if "://" not in url or url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path) if url.startswith("file://") else url).expanduser()
        if not path.is_dir():
            raise ValidationError(f"ModelDataUrl {url} is not a folder on this host.")
    store = open_store(url, options)
    try:
        await store.list()
    except ModelyardError as exc:
        raise ValidationError(f"Could not read ModelDataUrl {url}: {exc.message}") from exc
    return store


class EndpointDeployer:
    """Builds :class:`Deployment` objects from control-plane documents and registers them."""

    def __init__(
        self,
        base: Settings,
        registry: Registry,
        table: InstanceTable,
        data_dir: Path,
        *,
        host_memory: int,
        hub: MetricsHub | None = None,
    ) -> None:
        self.hub = hub
        self.base = base
        self.registry = registry
        self.table = table
        self.data_dir = data_dir
        self.host_memory = host_memory

    def budget(self, instance_type: str) -> int:
        """An instance's memory budget: its type's memory, capped to half of this host's."""
        kind = self.table.get(instance_type)
        return int(min(kind.memory_gib * GIB, self.host_memory / 2) * self.base.instance_memory_fraction)

    def _settings(self, endpoint: str, variant: dict[str, Any], model: dict[str, Any], index: int) -> Settings:
        container = model["PrimaryContainer"]
        cache_setting = (container.get("MultiModelConfig") or {}).get("ModelCacheSetting", "Enabled")
        update: dict[str, Any] = {
            key.removeprefix("MODELYARD_").lower(): value
            for key, value in (container.get("Environment") or {}).items()
            if key.startswith("MODELYARD_")
        }
        update |= {
            "store": container["ModelDataUrl"],
            "endpoint_name": endpoint,
            "variant_name": variant["VariantName"],
            "instance_id": str(index),
            "framework": framework_for_image(container.get("Image")),
            "memory": self.budget(variant["InstanceType"]),
            "model_cache": cache_setting,
            "disk_cache": self.data_dir / "cache" / endpoint / variant["VariantName"] / str(index),
            "preload": [],
            "pin": [],
        }
        try:
            return Settings.model_validate({**self.base.model_dump(), **update})
        except SettingsError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValidationError(f"Invalid container settings for {model['ModelName']}: {problem}") from exc

    async def deploy(self, endpoint: str, config: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
        """Start every instance of every variant, then route to them (replacing what ran)."""
        variants: list[Variant] = []
        try:
            for spec in config["ProductionVariants"]:
                model = models[spec["ModelName"]]
                url = model["PrimaryContainer"]["ModelDataUrl"]
                store = await _open_existing_store(url, dict(self.base.store_options))
                variant = Variant(spec["VariantName"], float(spec["InitialVariantWeight"]), spec["InstanceType"], [])
                variants.append(variant)
                for index in range(int(spec["InitialInstanceCount"])):
                    instance = Endpoint(self._settings(endpoint, spec, model, index), store, hub=self.hub)
                    variant.instances.append(instance)
                    await instance.start()
        except BaseException:
            await asyncio.gather(*(i.close() for v in variants for i in v.instances), return_exceptions=True)
            raise
        previous = self.registry.put(Deployment(endpoint, variants))
        if previous is not None:
            await previous.close()

    async def undeploy(self, endpoint: str) -> None:
        """Stop routing to ``endpoint`` and close it once its requests finish."""
        previous = self.registry.pop(endpoint)
        if previous is not None:
            await previous.close()

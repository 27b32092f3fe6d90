"""Building running endpoints from control-plane documents, on this host.

:class:`EndpointDeployer` turns a model and an endpoint config into instances
(:class:`~modelyard.endpoint.Endpoint`) and registers them in the
:class:`~modelyard.control.deploy.Registry` that routes requests.

Container fields:

* ``Image`` names the handler: ``auto``, ``xgboost``, ``lightgbm``, ``sklearn``,
  ``onnx``, ``mlflow``, ``python``, or a SageMaker image URI whose repository names one
  (``…/sagemaker-xgboost:1.7-1`` → ``xgboost``, ``…/sagemaker-scikit-learn:1.2-1`` →
  ``sklearn``, MLflow's ``…/mlflow-pyfunc:3.1.0`` → ``mlflow``). Anything else fails
  the endpoint with a ``FailureReason``.
* ``ModelDataUrl`` is the store prefix; it must exist and be readable. A folder on
  this host must lie in the operator's ``model_roots`` (or the default store's
  folder, or a declared endpoint's), else ``CreateModel`` is refused. Its artifacts
  may run code only when the operator trusts that store (``trusted_stores``).
* ``Environment`` keys ``MODELYARD_<SETTING>`` set the instance settings listed in
  :mod:`modelyard.control.environment`, which also says the precedence.
* ``MultiModelConfig.ModelCacheSetting`` ``Enabled``/``Disabled`` is honoured.

Each instance keeps its downloads in ``<data_dir>/cache/<endpoint>/<variant>/<n>``.
A redeployment reuses the disk caches of the instances it keeps (an update does not
download everything again); deleting an endpoint removes its folder.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError as SettingsError

from modelyard.artifacts import DiskCache
from modelyard.control.deploy import Deployment, Registry, Variant
from modelyard.control.endpoints import Deployer
from modelyard.control.environment import instance_settings
from modelyard.control.shapes import Container, ProductionVariant
from modelyard.endpoint import Endpoint
from modelyard.errors import ControlValidation, ModelyardError, ValidationError
from modelyard.handlers import HANDLERS
from modelyard.instances import GIB, InstanceTable
from modelyard.metrics import MetricsHub
from modelyard.settings import Settings
from modelyard.store import Store, open_store
from modelyard.store.location import is_local, local_path, within

__all__ = ["EndpointDeployer", "framework_for_image"]

log = logging.getLogger("modelyard.control")

_ALIASES = {
    "scikit-learn": "sklearn",
    "sklearn": "sklearn",
    "onnxruntime": "onnx",
    "lgbm": "lightgbm",
    "mlflow-pyfunc": "mlflow",  # the image `mlflow sagemaker build-and-push-container` pushes
}
_MARKER = ".modelyard-endpoint"  # in each endpoint's cache folder: modelyard made it and may remove it


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


async def _open_existing_store(url: str, options: dict[str, str]) -> Store:
    """The store at ``url``, which must exist and be readable (a folder is not created)."""
    if is_local(url) and not local_path(url).is_dir():
        raise ValidationError(f"ModelDataUrl {url} is not a folder on this host.")
    store = open_store(url, options)
    try:
        await store.check()
    except ModelyardError as exc:
        raise ValidationError(f"Could not read ModelDataUrl {url}: {exc.message}") from exc
    return store


class EndpointDeployer(Deployer):
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
        roots: Iterable[str | Path] = (),
    ) -> None:
        self.hub = hub
        self.base = base
        self.registry = registry
        self.table = table
        self.data_dir = data_dir
        self.host_memory = host_memory
        self.roots: list[str | Path] = [*base.model_roots, *roots]
        if base.store and is_local(base.store):
            self.roots.append(base.store)
        self._disks: dict[Path, DiskCache] = {}

    def budget(self, instance_type: str) -> int:
        """An instance's memory budget: its type's memory, capped to half of this host's."""
        kind = self.table.get(instance_type)
        return int(min(kind.memory_gib * GIB, self.host_memory / 2) * self.base.instance_memory_fraction)

    # -- checks at CreateModel / CreateEndpointConfig -------------------------------

    def check_container(self, container: Container) -> None:
        url = container.ModelDataUrl or ""
        if is_local(url) and not within(url, self.roots):
            raise ControlValidation(
                f"ModelDataUrl {url} is a folder outside the ones this server may serve: its operator allows "
                "them with model_roots (--model-root)."
            )
        instance_settings(container.Environment)

    def check_variant(self, variant: ProductionVariant, model: dict[str, Any]) -> None:
        try:
            budget = self.budget(variant.InstanceType)
        except ValidationError as exc:
            raise ControlValidation(exc.message) from exc
        wanted = instance_settings(model["PrimaryContainer"].get("Environment") or {}).get("memory")
        if wanted is not None and wanted > budget:
            raise ControlValidation(
                f"MODELYARD_MEMORY of model {model['ModelName']} ({wanted} bytes) is more than the {budget} bytes "
                f"an {variant.InstanceType} instance gives its models."
            )

    # -- instances -------------------------------------------------------------------

    def _settings(self, endpoint: str, variant: dict[str, Any], model: dict[str, Any], index: int) -> Settings:
        container = model["PrimaryContainer"]
        url = container["ModelDataUrl"]
        chosen = instance_settings(container.get("Environment") or {})
        cache_setting = (container.get("MultiModelConfig") or {}).get("ModelCacheSetting", "Enabled")
        update: dict[str, Any] = {
            "preload": [],
            "pin": [],
            **chosen,
            "memory": chosen.get("memory", self.budget(variant["InstanceType"])),
            "store": url,
            "endpoint_name": endpoint,
            "variant_name": variant["VariantName"],
            "instance_id": str(index),
            "framework": framework_for_image(container.get("Image")),
            "model_cache": cache_setting,
            "trust_store": self.base.trusts(url),
            "disk_cache": self._folder(endpoint) / variant["VariantName"] / str(index),
        }
        try:
            return Settings.model_validate({**self.base.model_dump(), **update})
        except SettingsError as exc:
            problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValidationError(f"Invalid container settings for {model['ModelName']}: {problem}") from exc

    def _folder(self, endpoint: str) -> Path:
        return self.data_dir / "cache" / endpoint

    def _disk(self, settings: Settings, store: Store) -> DiskCache:
        folder = settings.disk_cache_dir()
        disk = self._disks.get(folder)
        if disk is None:
            marker = self._folder(settings.endpoint_name) / _MARKER
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            disk = self._disks[folder] = DiskCache.for_endpoint(settings, store)
        return disk

    async def deploy(self, endpoint: str, config: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
        """Start every instance of every variant, then route to them (replacing what ran)."""
        variants: list[Variant] = []
        try:
            for spec in config["ProductionVariants"]:
                model = models[spec["ModelName"]]
                url = model["PrimaryContainer"]["ModelDataUrl"]
                if is_local(url) and not within(url, self.roots):
                    raise ValidationError(f"ModelDataUrl {url} is a folder outside the ones this server may serve.")
                store = await _open_existing_store(url, dict(self.base.store_options))
                variant = Variant(spec["VariantName"], float(spec["InitialVariantWeight"]), spec["InstanceType"], [])
                variants.append(variant)
                for index in range(int(spec["InitialInstanceCount"])):
                    settings = self._settings(endpoint, spec, model, index)
                    instance = Endpoint(settings, store, hub=self.hub, disk=self._disk(settings, store))
                    variant.instances.append(instance)
                    await instance.start()
        except BaseException:
            await asyncio.gather(*(i.close() for v in variants for i in v.instances), return_exceptions=True)
            raise
        previous = self.registry.put(Deployment(endpoint, variants))
        if previous is not None:
            await previous.close()
        kept = {instance.settings.disk_cache_dir() for variant in variants for instance in variant.instances}
        self._forget(endpoint, keep=kept)

    async def undeploy(self, endpoint: str) -> None:
        """Stop routing to ``endpoint``, close it once its requests finish, and remove its downloads."""
        previous = self.registry.pop(endpoint)
        if previous is not None:
            await previous.close()
        self._forget(endpoint)
        self._remove(self._folder(endpoint))

    def reweight(self, endpoint: str, weights: dict[str, float]) -> bool:
        deployment = self.registry.get(endpoint)
        if deployment is None or {v.name for v in deployment.variants} != set(weights):
            return False
        for variant in deployment.variants:
            variant.weight = weights[variant.name]
        return True

    def prune(self, keep: set[str]) -> None:
        """Remove the cache folders of endpoints that no longer exist (deleted while the server was down)."""
        root = self.data_dir / "cache"
        if root.is_dir():
            for folder in root.iterdir():
                if folder.name not in keep:
                    self._remove(folder)

    def _forget(self, endpoint: str, keep: set[Path] | None = None) -> None:
        folder = self._folder(endpoint)
        for path in [p for p in self._disks if p.is_relative_to(folder) and p not in (keep or set())]:
            del self._disks[path]
            if keep is not None:
                self._remove(path, marked=False)

    def _remove(self, folder: Path, *, marked: bool = True) -> None:
        """Delete ``folder``, which modelyard made (``marked``: only when its marker says so)."""
        if marked and not (folder / _MARKER).is_file():
            return
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed the disk cache %s", folder)

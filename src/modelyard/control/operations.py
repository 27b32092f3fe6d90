"""The SageMaker control-plane operations, with botocore's request and response shapes.

:class:`ControlPlane` answers ``CreateModel``, ``DescribeModel``, ``ListModels``,
``DeleteModel``, the same four for endpoint configs, and ``CreateEndpoint``,
``DescribeEndpoint``, ``ListEndpoints``, ``UpdateEndpoint``, ``DeleteEndpoint``.
Documents are stored as DescribeX returns them (timestamps as epoch seconds, as the
JSON 1.1 protocol carries them). Endpoints move Creating → InService (or Failed
with a ``FailureReason``), Updating → InService, Deleting → gone, while a
:class:`~modelyard.control.deploy.Deployer` does the work in the background.
Errors are ``ValidationException`` with SageMaker's messages.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from modelyard.control.catalog import Catalog
from modelyard.errors import ControlValidation, ModelyardError

__all__ = ["ACCOUNT", "ControlPlane", "Deployer"]

log = logging.getLogger("modelyard.control")

ACCOUNT = "000000000000"
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_KIND_ARN = {"model": "model", "endpoint_config": "endpoint-config", "endpoint": "endpoint"}
_KIND_WORDS = {"model": "model", "endpoint_config": "endpoint configuration", "endpoint": "endpoint"}


class Deployer(Protocol):
    """What runs endpoints: the control plane only says what should run."""

    async def deploy(self, endpoint: str, config: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
        """Start (or replace) ``endpoint`` with ``config``; raise a ModelyardError saying why it cannot."""

    async def undeploy(self, endpoint: str) -> None:
        """Stop ``endpoint`` after its requests in flight finish."""


def _field(key: str) -> str:
    return key[0].lower() + key[1:]


def _require(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    if value in (None, "", []):
        raise ControlValidation(
            f"1 validation error detected: Value null at '{_field(key)}' failed to satisfy constraint: "
            "Member must not be null"
        )
    return value


def _name(body: dict[str, Any], key: str) -> str:
    value = _require(body, key)
    if not isinstance(value, str) or not _NAME.match(value):
        raise ControlValidation(
            f"1 validation error detected: Value '{value}' at '{_field(key)}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
        )
    return value


class ControlPlane:
    """The operations, over a :class:`Catalog` and a :class:`Deployer`."""

    def __init__(
        self, catalog: Catalog, deployer: Deployer, *, region: str = "us-east-1", clock: Callable[[], float] = time.time
    ) -> None:
        self.catalog = catalog
        self.deployer = deployer
        self.region = region
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._operations: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "UpdateEndpoint": self.update_endpoint,
            "DeleteEndpoint": self.delete_endpoint,
        }

    @property
    def operations(self) -> list[str]:
        """The operation names this control plane answers."""
        return list(self._operations)

    async def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run ``operation`` (``CreateEndpoint``...) on a request document."""
        handler = self._operations.get(operation)
        if handler is None:
            raise ControlValidation(f"Operation {operation} is not supported by this server.")
        return await handler(body)

    def arn(self, kind: str, name: str) -> str:
        """The resource's ARN (SageMaker lower-cases names in ARNs)."""
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{_KIND_ARN[kind]}/{name.lower()}"

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        doc = self.catalog.get(kind, name)
        if doc is None:
            raise ControlValidation(f'Could not find {_KIND_WORDS[kind]} "{self.arn(kind, name)}".')
        return doc

    def _create(self, kind: str, name: str, doc: dict[str, Any], status: str | None = None) -> None:
        if not self.catalog.insert(kind, name, doc, created=doc["CreationTime"], status=status):
            raise ControlValidation(f'Cannot create already existing {_KIND_WORDS[kind]} "{self.arn(kind, name)}".')

    def _list(
        self, kind: str, body: dict[str, Any], key: str, summary: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        docs = self.catalog.list(kind)
        contains = str(body.get("NameContains") or "").lower()
        docs = [d for d in docs if contains in d[key].lower()]
        if "StatusEquals" in body:
            docs = [d for d in docs if d.get("EndpointStatus") == body["StatusEquals"]]
        for field, op in (("CreationTimeBefore", float.__lt__), ("CreationTimeAfter", float.__gt__)):
            if field in body:
                docs = [d for d in docs if op(float(d["CreationTime"]), float(body[field]))]
        sort = "Name" if body.get("SortBy") == "Name" else "CreationTime"
        docs.sort(
            key=lambda d: d[key] if sort == "Name" else d["CreationTime"],
            reverse=body.get("SortOrder", "Descending") == "Descending",
        )
        start = int(body.get("NextToken") or 0)
        limit = int(body.get("MaxResults") or 100)
        result: dict[str, Any] = {"items": [summary(d) for d in docs[start : start + limit]]}
        if start + limit < len(docs):
            result["NextToken"] = str(start + limit)
        return result

    # -- models -------------------------------------------------------------------

    async def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "ModelName")
        containers = body.get("Containers") or ([body["PrimaryContainer"]] if body.get("PrimaryContainer") else [])
        if len(containers) != 1:
            raise ControlValidation("A model needs exactly one container (PrimaryContainer or Containers) here.")
        container = dict(containers[0])
        if not container.get("ModelDataUrl"):
            raise ControlValidation("The container needs a ModelDataUrl: the store prefix of the model artifacts.")
        if container.get("Mode", "SingleModel") not in ("SingleModel", "MultiModel"):
            raise ControlValidation(f"Container Mode must be SingleModel or MultiModel, not {container['Mode']}.")
        doc = {
            "ModelName": name,
            "ModelArn": self.arn("model", name),
            "PrimaryContainer": container,
            "ExecutionRoleArn": body.get("ExecutionRoleArn") or f"arn:aws:iam::{ACCOUNT}:role/modelyard",
            "CreationTime": self._clock(),
        }
        self._create("model", name, doc)
        return {"ModelArn": doc["ModelArn"]}

    async def describe_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("model", _name(body, "ModelName"))

    async def list_models(self, body: dict[str, Any]) -> dict[str, Any]:
        page = self._list(
            "model", body, "ModelName", lambda d: {k: d[k] for k in ("ModelName", "ModelArn", "CreationTime")}
        )
        return {"Models": page.pop("items"), **page}

    async def delete_model(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "ModelName")
        if not self.catalog.delete("model", name):
            raise ControlValidation(f'Could not find model "{self.arn("model", name)}".')
        return {}

    # -- endpoint configs ---------------------------------------------------------

    async def create_endpoint_config(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointConfigName")
        variants = _require(body, "ProductionVariants")
        if not isinstance(variants, list) or not 1 <= len(variants) <= 10:
            raise ControlValidation("ProductionVariants must list 1 to 10 variants.")
        names = set()
        clean = []
        for variant in variants:
            variant_name = _name(variant, "VariantName")
            if variant_name in names:
                raise ControlValidation(f"Variant names must be unique: {variant_name} appears twice.")
            names.add(variant_name)
            model = _name(variant, "ModelName")
            count = int(variant.get("InitialInstanceCount", 1))
            if not 1 <= count <= 64:
                raise ControlValidation(f"InitialInstanceCount of {variant_name} must be between 1 and 64.")
            weight = float(variant.get("InitialVariantWeight", 1.0))
            if weight < 0:
                raise ControlValidation(f"InitialVariantWeight of {variant_name} must not be negative.")
            clean.append(
                {
                    "VariantName": variant_name,
                    "ModelName": model,
                    "InitialInstanceCount": count,
                    "InstanceType": str(variant.get("InstanceType") or "ml.m5.large"),
                    "InitialVariantWeight": weight,
                }
            )
        doc = {
            "EndpointConfigName": name,
            "EndpointConfigArn": self.arn("endpoint_config", name),
            "ProductionVariants": clean,
            "CreationTime": self._clock(),
        }
        self._create("endpoint_config", name, doc)
        return {"EndpointConfigArn": doc["EndpointConfigArn"]}

    async def describe_endpoint_config(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("endpoint_config", _name(body, "EndpointConfigName"))

    async def list_endpoint_configs(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        page = self._list("endpoint_config", body, "EndpointConfigName", lambda d: {k: d[k] for k in keys})
        return {"EndpointConfigs": page.pop("items"), **page}

    async def delete_endpoint_config(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointConfigName")
        if not self.catalog.delete("endpoint_config", name):
            raise ControlValidation(f'Could not find endpoint configuration "{self.arn("endpoint_config", name)}".')
        return {}

    # -- endpoints ----------------------------------------------------------------

    def _resolve(self, config_name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        config = self._get("endpoint_config", config_name)
        models = {}
        for variant in config["ProductionVariants"]:
            models[variant["ModelName"]] = self._get("model", variant["ModelName"])
        return config, models

    def _variants(self, config: dict[str, Any], current: int | None) -> list[dict[str, Any]]:
        return [
            {
                "VariantName": v["VariantName"],
                "CurrentWeight": v["InitialVariantWeight"],
                "DesiredWeight": v["InitialVariantWeight"],
                "CurrentInstanceCount": v["InitialInstanceCount"] if current is None else current,
                "DesiredInstanceCount": v["InitialInstanceCount"],
            }
            for v in config["ProductionVariants"]
        ]

    def _set_status(self, name: str, status: str, **changes: Any) -> None:
        doc = self.catalog.get("endpoint", name)
        if doc is None:
            return
        doc.update(changes, EndpointStatus=status, LastModifiedTime=self._clock())
        if status != "Failed" and "FailureReason" not in changes:
            doc.pop("FailureReason", None)
        self.catalog.update("endpoint", name, doc, modified=doc["LastModifiedTime"], status=status)

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointName")
        config_name = _name(body, "EndpointConfigName")
        config, models = self._resolve(config_name)
        now = self._clock()
        doc = {
            "EndpointName": name,
            "EndpointArn": self.arn("endpoint", name),
            "EndpointConfigName": config_name,
            "ProductionVariants": self._variants(config, 0),
            "EndpointStatus": "Creating",
            "CreationTime": now,
            "LastModifiedTime": now,
        }
        self._create("endpoint", name, doc, status="Creating")
        self._background(self._deploy(name, config, models, creating=True))
        return {"EndpointArn": doc["EndpointArn"]}

    async def _deploy(
        self, name: str, config: dict[str, Any], models: dict[str, dict[str, Any]], *, creating: bool
    ) -> None:
        try:
            await self.deployer.deploy(name, config, models)
        except Exception as exc:  # noqa: BLE001 - any failure is the endpoint's FailureReason
            reason = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            log.warning("endpoint %s failed: %s", name, reason)
            if creating:
                self._set_status(name, "Failed", FailureReason=reason)
            else:  # a failed update leaves the previous deployment serving
                self._set_status(name, "InService", FailureReason=reason)
            return
        self._set_status(
            name,
            "InService",
            EndpointConfigName=config["EndpointConfigName"],
            ProductionVariants=self._variants(config, None),
        )

    async def describe_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._get("endpoint", _name(body, "EndpointName"))

    async def list_endpoints(self, body: dict[str, Any]) -> dict[str, Any]:
        keys = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
        page = self._list("endpoint", body, "EndpointName", lambda d: {k: d[k] for k in keys})
        return {"Endpoints": page.pop("items"), **page}

    async def update_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointName")
        doc = self._get("endpoint", name)
        if doc["EndpointStatus"] not in ("InService", "Failed"):
            raise ControlValidation(f'Cannot update in-progress endpoint "{doc["EndpointArn"]}".')
        config, models = self._resolve(_name(body, "EndpointConfigName"))
        was_failed = doc["EndpointStatus"] == "Failed"
        self._set_status(name, "Updating")
        self._background(self._deploy(name, config, models, creating=was_failed))
        return {"EndpointArn": doc["EndpointArn"]}

    async def delete_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        name = _name(body, "EndpointName")
        doc = self._get("endpoint", name)
        if doc["EndpointStatus"] == "Deleting":
            return {}
        self._set_status(name, "Deleting")
        self._background(self._delete(name))
        return {}

    async def _delete(self, name: str) -> None:
        try:
            await self.deployer.undeploy(name)
        finally:
            self.catalog.delete("endpoint", name)

    async def restore(self) -> None:
        """After a restart: bring every persisted endpoint back (Creating → InService)."""
        for doc in self.catalog.list("endpoint"):
            name = doc["EndpointName"]
            if doc["EndpointStatus"] == "Deleting":
                self.catalog.delete("endpoint", name)
                continue
            if doc["EndpointStatus"] == "Failed":
                continue
            try:
                config, models = self._resolve(doc["EndpointConfigName"])
            except ControlValidation as exc:
                self._set_status(name, "Failed", FailureReason=exc.message)
                continue
            self._set_status(name, "Creating")
            self._background(self._deploy(name, config, models, creating=True))

    async def close(self) -> None:
        """Wait for background work to end."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

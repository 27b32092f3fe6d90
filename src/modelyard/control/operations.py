"""The SageMaker control-plane operations, with botocore's request and response shapes.

:class:`ControlPlane` answers ``CreateModel``, ``DescribeModel``, ``ListModels``,
``DeleteModel``, the same four for endpoint configs, the endpoint operations of
:class:`~modelyard.control.endpoints.EndpointOperations`, and ``AddTags``,
``ListTags``, ``DeleteTags``. Every request is checked against its shape
(:mod:`modelyard.control.shapes`) first. Documents are stored as DescribeX returns them
(timestamps as epoch seconds, as the JSON 1.1 protocol carries them). Errors are
``ValidationException`` with SageMaker's messages.

A caller holding an access key limited to endpoint name patterns acts only on the
models, endpoint configs and endpoints whose names match (``AccessDeniedException``
otherwise), and lists only those.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from modelyard.control.auth import AccessKey, Verifier
from modelyard.control.catalog import Catalog
from modelyard.control.endpoints import Deployer, EndpointOperations
from modelyard.control.resources import ACCOUNT, ARN_KINDS, KIND_WORDS, Call, Resources
from modelyard.control.shapes import (
    AddTags,
    CreateEndpointConfig,
    CreateModel,
    DeleteTags,
    EndpointConfigRef,
    Listing,
    ListTags,
    ModelRef,
    Tag,
    parse,
)
from modelyard.errors import ControlValidation

__all__ = ["ACCOUNT", "ControlPlane"]

log = logging.getLogger("modelyard.control")

Operation = Callable[[Call], Awaitable[dict[str, Any]]]


class ControlPlane(EndpointOperations):
    """The operations, over a :class:`Catalog` and a :class:`Deployer`."""

    def __init__(self, catalog: Catalog, deployer: Deployer, *, region: str = "us-east-1", **options: Any) -> None:
        super().__init__(Resources(catalog, region, **options), deployer)
        self.catalog = catalog
        self.region = region
        self._operations: dict[str, Operation] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            **self.endpoint_operations(),
            "AddTags": self.add_tags,
            "ListTags": self.list_tags,
            "DeleteTags": self.delete_tags,
        }

    @property
    def operations(self) -> list[str]:
        """The operation names this control plane answers."""
        return list(self._operations)

    async def call(self, operation: str, body: dict[str, Any], key: AccessKey | None = None) -> dict[str, Any]:
        """Run ``operation`` (``CreateEndpoint``...) on a request document for the caller holding ``key``."""
        handler = self._operations.get(operation)
        if handler is None:
            raise ControlValidation(f"Operation {operation} is not supported by this server.")
        return await handler(Call(operation, body, key, self.resources))

    def arn(self, kind: str, name: str) -> str:
        """The resource's ARN (SageMaker lower-cases names in ARNs)."""
        return self.resources.arn(kind, name)

    # -- models -------------------------------------------------------------------

    async def create_model(self, call: Call) -> dict[str, Any]:
        request = parse(CreateModel, call.body)
        name = call.allow("model", request.ModelName)
        containers = request.Containers or ([request.PrimaryContainer] if request.PrimaryContainer else [])
        if len(containers) != 1:
            raise ControlValidation("A model needs exactly one container (PrimaryContainer or Containers) here.")
        container = containers[0]
        if not container.ModelDataUrl:
            raise ControlValidation("The container needs a ModelDataUrl: the store prefix of the model artifacts.")
        self.deployer.check_container(container)
        doc = {
            "ModelName": name,
            "ModelArn": self.arn("model", name),
            "PrimaryContainer": container.model_dump(exclude_none=True),
            "ExecutionRoleArn": request.ExecutionRoleArn or f"arn:aws:iam::{ACCOUNT}:role/modelyard",
            "CreationTime": self.resources.now(),
        }
        self.resources.create("model", name, doc, tags=request.Tags)
        return {"ModelArn": doc["ModelArn"]}

    async def describe_model(self, call: Call) -> dict[str, Any]:
        return self.resources.get("model", call.allow("model", parse(ModelRef, call.body).ModelName))

    async def list_models(self, call: Call) -> dict[str, Any]:
        keys = ("ModelName", "ModelArn", "CreationTime")
        page = call.page("model", parse(Listing, call.body), "ModelName", lambda d: {k: d[k] for k in keys})
        return {"Models": page.pop("items"), **page}

    async def delete_model(self, call: Call) -> dict[str, Any]:
        self.resources.delete("model", call.allow("model", parse(ModelRef, call.body).ModelName))
        return {}

    # -- endpoint configs ---------------------------------------------------------

    async def create_endpoint_config(self, call: Call) -> dict[str, Any]:
        request = parse(CreateEndpointConfig, call.body)
        name = call.allow("endpoint_config", request.EndpointConfigName)
        seen: set[str] = set()
        for variant in request.ProductionVariants:
            if variant.VariantName in seen:
                raise ControlValidation(f"Variant names must be unique: {variant.VariantName} appears twice.")
            seen.add(variant.VariantName)
            call.allow("model", variant.ModelName)
            model = self.resources.find("model", variant.ModelName)
            if model is not None:  # SageMaker checks the model when the endpoint is created, as here below
                self.deployer.check_variant(variant, model)
        doc = {
            "EndpointConfigName": name,
            "EndpointConfigArn": self.arn("endpoint_config", name),
            "ProductionVariants": [v.model_dump() for v in request.ProductionVariants],
            "CreationTime": self.resources.now(),
        }
        self.resources.create("endpoint_config", name, doc, tags=request.Tags)
        return {"EndpointConfigArn": doc["EndpointConfigArn"]}

    async def describe_endpoint_config(self, call: Call) -> dict[str, Any]:
        name = call.allow("endpoint_config", parse(EndpointConfigRef, call.body).EndpointConfigName)
        return self.resources.get("endpoint_config", name)

    async def list_endpoint_configs(self, call: Call) -> dict[str, Any]:
        keys = ("EndpointConfigName", "EndpointConfigArn", "CreationTime")
        listing = parse(Listing, call.body)
        page = call.page("endpoint_config", listing, "EndpointConfigName", lambda d: {k: d[k] for k in keys})
        return {"EndpointConfigs": page.pop("items"), **page}

    async def delete_endpoint_config(self, call: Call) -> dict[str, Any]:
        name = call.allow("endpoint_config", parse(EndpointConfigRef, call.body).EndpointConfigName)
        self.resources.delete("endpoint_config", name)
        return {}

    # -- tags ---------------------------------------------------------------------

    def _tagged(self, call: Call, arn: str) -> tuple[str, str]:
        """The (kind, name) of the resource ``arn`` names, which the caller may act on."""
        resource = arn.split(":", 5)[-1]
        kind_word, _, lowered = resource.partition("/")
        kind = next((k for k, word in ARN_KINDS.items() if word == kind_word), None)
        name = self.catalog.find(kind, lowered) if kind is not None and lowered else None
        if kind is None or name is None:
            raise ControlValidation(f"Could not find resource {arn}.")
        if call.key is not None:
            Verifier.authorize_resource(call.key, call.operation, arn, name)
        return kind, name

    async def add_tags(self, call: Call) -> dict[str, Any]:
        request = parse(AddTags, call.body)
        kind, name = self._tagged(call, request.ResourceArn)
        tags = self.catalog.tags(kind, name) | {tag.Key: tag.Value for tag in request.Tags}
        if len(tags) > 50:
            raise ControlValidation(f"A {KIND_WORDS[kind]} can have at most 50 tags; this would make {len(tags)}.")
        self.catalog.set_tags(kind, name, tags)
        return {"Tags": [tag.model_dump() for tag in request.Tags]}

    async def list_tags(self, call: Call) -> dict[str, Any]:
        request = parse(ListTags, call.body)
        kind, name = self._tagged(call, request.ResourceArn)
        tags = [Tag(Key=k, Value=v).model_dump() for k, v in self.catalog.tags(kind, name).items()]
        start = int(request.NextToken or 0)
        result: dict[str, Any] = {"Tags": tags[start : start + request.MaxResults]}
        if start + request.MaxResults < len(tags):
            result["NextToken"] = str(start + request.MaxResults)
        return result

    async def delete_tags(self, call: Call) -> dict[str, Any]:
        request = parse(DeleteTags, call.body)
        kind, name = self._tagged(call, request.ResourceArn)
        tags = self.catalog.tags(kind, name)
        self.catalog.set_tags(kind, name, {k: v for k, v in tags.items() if k not in set(request.TagKeys)})
        return {}

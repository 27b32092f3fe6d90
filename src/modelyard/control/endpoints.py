"""Endpoint operations: what should run, and the order in which it changes.

``CreateEndpoint``, ``DescribeEndpoint``, ``ListEndpoints``, ``UpdateEndpoint``,
``UpdateEndpointWeightsAndCapacities`` and ``DeleteEndpoint``. Endpoints move Creating
→ InService (or Failed with a ``FailureReason``), Updating → InService, Deleting →
gone, while a :class:`Deployer` does the work in the background.

The background work of one endpoint runs in the order it was asked for: an update
starts once the creation before it ended, and a delete stops a creation or update
still under way and waits for it before it undeploys, so an endpoint deleted right
after it was created never comes back to serve requests (no ghost endpoints).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from modelyard.control.resources import Call, Resources
from modelyard.control.shapes import (
    Container,
    CreateEndpoint,
    EndpointRef,
    Listing,
    ProductionVariant,
    UpdateEndpoint,
    UpdateEndpointWeightsAndCapacities,
    parse,
)
from modelyard.errors import ControlValidation, ModelyardError

__all__ = ["Deployer", "EndpointOperations"]

log = logging.getLogger("modelyard.control")

Operation = Callable[[Call], Awaitable[dict[str, Any]]]

SETTLE_SECONDS = 1.0


class Deployer(ABC):
    """What runs endpoints: the control plane only says what should run."""

    def check_container(self, container: Container) -> None:  # noqa: B027 - nothing to check by default
        """Refuse (``ControlValidation``) a container that can never run here, at ``CreateModel``."""

    def check_variant(self, variant: ProductionVariant, model: dict[str, Any]) -> None:  # noqa: B027
        """Refuse a variant that cannot run ``model`` here, at ``CreateEndpointConfig``/``CreateEndpoint``."""

    @abstractmethod
    async def deploy(self, endpoint: str, config: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
        """Start (or replace) ``endpoint`` with ``config``; raise a ModelyardError saying why it cannot."""

    @abstractmethod
    async def undeploy(self, endpoint: str) -> None:
        """Stop ``endpoint`` after its requests in flight finish, and forget its files."""

    def reweight(self, endpoint: str, weights: dict[str, float]) -> bool:
        """Change the running variants' weights in place; False when it cannot (then it is redeployed)."""
        return False

    def prune(self, keep: set[str]) -> None:  # noqa: B027 - nothing kept by default
        """Forget what is kept for endpoints that no longer exist (after a restart)."""


def _variants(config: dict[str, Any], current: int | None = None) -> list[dict[str, Any]]:
    """DescribeEndpoint's ProductionVariants for ``config``; ``current`` instances while it starts."""
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


def _desired(config: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the weights and instance counts the endpoint was last asked for."""
    wanted = {v["VariantName"]: v for v in doc.get("ProductionVariants", [])}
    variants = []
    for variant in config["ProductionVariants"]:
        desired = wanted.get(variant["VariantName"], {})
        variants.append(
            variant
            | {
                "InitialVariantWeight": desired.get("DesiredWeight", variant["InitialVariantWeight"]),
                "InitialInstanceCount": desired.get("DesiredInstanceCount", variant["InitialInstanceCount"]),
            }
        )
    return config | {"ProductionVariants": variants}


class EndpointOperations:
    """The endpoint half of the control plane (see module doc)."""

    def __init__(self, resources: Resources, deployer: Deployer) -> None:
        self.resources = resources
        self.deployer = deployer
        self._work: dict[str, asyncio.Task[None]] = {}  # each endpoint's latest background work

    def endpoint_operations(self) -> dict[str, Operation]:
        """The operations this class answers, by name."""
        return {
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_endpoint_weights_and_capacities,
            "DeleteEndpoint": self.delete_endpoint,
        }

    # -- background work, one endpoint at a time ---------------------------------

    def _schedule(self, name: str, work: Callable[[], Awaitable[None]], *, stop_previous: bool = False) -> None:
        previous = self._work.get(name)

        async def run() -> None:
            if previous is not None:
                if stop_previous:
                    previous.cancel()
                await asyncio.gather(previous, return_exceptions=True)
            await work()

        task = asyncio.ensure_future(run())
        self._work[name] = task
        task.add_done_callback(lambda done: self._work.pop(name) if self._work.get(name) is done else None)

    async def _settle(self, name: str, seconds: float = SETTLE_SECONDS) -> None:
        """Give ``name``'s background work a moment: a quick deployment is InService by the reply,
        so boto3's waiter, which sleeps 30 s between polls, finds it at its first poll."""
        task = self._work.get(name)
        if task is not None:
            await asyncio.wait({task}, timeout=seconds)

    def _resolve(self, call: Call | None, config_name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        config = self.resources.get("endpoint_config", config_name)
        models = {}
        for variant in config["ProductionVariants"]:
            model_name = variant["ModelName"]
            if call is not None:
                call.allow("model", model_name)
            models[model_name] = model = self.resources.get("model", model_name)
            self.deployer.check_variant(ProductionVariant.model_validate(variant), model)
        return config, models

    def _set_status(self, name: str, status: str, **changes: Any) -> None:
        doc = self.resources.catalog.get("endpoint", name)
        if doc is None:
            return
        doc.update(changes, EndpointStatus=status, LastModifiedTime=self.resources.now())
        if status != "Failed" and "FailureReason" not in changes:
            doc.pop("FailureReason", None)
        self.resources.catalog.update("endpoint", name, doc, modified=doc["LastModifiedTime"], status=status)

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
            name, "InService", EndpointConfigName=config["EndpointConfigName"], ProductionVariants=_variants(config)
        )

    # -- operations ---------------------------------------------------------------

    async def create_endpoint(self, call: Call) -> dict[str, Any]:
        request = parse(CreateEndpoint, call.body)
        name = call.allow("endpoint", request.EndpointName)
        config, models = self._resolve(call, call.allow("endpoint_config", request.EndpointConfigName))
        now = self.resources.now()
        doc = {
            "EndpointName": name,
            "EndpointArn": self.resources.arn("endpoint", name),
            "EndpointConfigName": config["EndpointConfigName"],
            "ProductionVariants": _variants(config, current=0),
            "EndpointStatus": "Creating",
            "CreationTime": now,
            "LastModifiedTime": now,
        }
        self.resources.create("endpoint", name, doc, status="Creating", tags=request.Tags)
        self._schedule(name, lambda: self._deploy(name, config, models, creating=True))
        await self._settle(name)
        return {"EndpointArn": doc["EndpointArn"]}

    async def describe_endpoint(self, call: Call) -> dict[str, Any]:
        return self.resources.get("endpoint", call.allow("endpoint", parse(EndpointRef, call.body).EndpointName))

    async def list_endpoints(self, call: Call) -> dict[str, Any]:
        keys = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
        page = call.page("endpoint", parse(Listing, call.body), "EndpointName", lambda d: {k: d[k] for k in keys})
        return {"Endpoints": page.pop("items"), **page}

    def _updatable(self, name: str) -> dict[str, Any]:
        doc = self.resources.get("endpoint", name)
        if doc["EndpointStatus"] not in ("InService", "Failed"):
            raise ControlValidation(f'Cannot update in-progress endpoint "{doc["EndpointArn"]}".')
        return doc

    async def update_endpoint(self, call: Call) -> dict[str, Any]:
        request = parse(UpdateEndpoint, call.body)
        name = call.allow("endpoint", request.EndpointName)
        doc = self._updatable(name)
        config, models = self._resolve(call, call.allow("endpoint_config", request.EndpointConfigName))
        creating = doc["EndpointStatus"] == "Failed"
        self._set_status(name, "Updating")
        self._schedule(name, lambda: self._deploy(name, config, models, creating=creating))
        await self._settle(name)
        return {"EndpointArn": doc["EndpointArn"]}

    async def update_endpoint_weights_and_capacities(self, call: Call) -> dict[str, Any]:
        request = parse(UpdateEndpointWeightsAndCapacities, call.body)
        name = call.allow("endpoint", request.EndpointName)
        doc = self.resources.get("endpoint", name)
        arn = doc["EndpointArn"]
        if doc["EndpointStatus"] != "InService":
            raise ControlValidation(f'Cannot update in-progress endpoint "{arn}".')
        variants = {v["VariantName"]: dict(v) for v in doc["ProductionVariants"]}
        for wanted in request.DesiredWeightsAndCapacities:
            variant = variants.get(wanted.VariantName)
            if variant is None:
                raise ControlValidation(f'The variant(s) "[{wanted.VariantName}]" is/are not present in "{arn}".')
            if wanted.DesiredWeight is not None:
                variant["DesiredWeight"] = wanted.DesiredWeight
            if wanted.DesiredInstanceCount is not None:
                variant["DesiredInstanceCount"] = wanted.DesiredInstanceCount
        listed = list(variants.values())
        same_counts = all(v["DesiredInstanceCount"] == v["CurrentInstanceCount"] for v in listed)
        if same_counts and self.deployer.reweight(name, {v["VariantName"]: v["DesiredWeight"] for v in listed}):
            self._set_status(
                name, "InService", ProductionVariants=[v | {"CurrentWeight": v["DesiredWeight"]} for v in listed]
            )
            return {"EndpointArn": arn}
        self._set_status(name, "Updating", ProductionVariants=listed)
        config, models = self._resolve(call, doc["EndpointConfigName"])
        config = _desired(config, {"ProductionVariants": listed})
        self._schedule(name, lambda: self._deploy(name, config, models, creating=False))
        return {"EndpointArn": doc["EndpointArn"]}

    async def delete_endpoint(self, call: Call) -> dict[str, Any]:
        name = call.allow("endpoint", parse(EndpointRef, call.body).EndpointName)
        doc = self.resources.get("endpoint", name)
        if doc["EndpointStatus"] != "Deleting":
            self._set_status(name, "Deleting")
            self._schedule(name, lambda: self._delete(name), stop_previous=True)
        return {}

    async def _delete(self, name: str) -> None:
        try:
            await self.deployer.undeploy(name)
        finally:
            self.resources.catalog.delete("endpoint", name)

    # -- lifecycle ----------------------------------------------------------------

    async def restore(self) -> None:
        """After a restart: bring every persisted endpoint back (Creating → InService)."""
        docs = self.resources.catalog.list("endpoint")
        self.deployer.prune({doc["EndpointName"] for doc in docs if doc["EndpointStatus"] != "Deleting"})
        for doc in docs:
            name = doc["EndpointName"]
            if doc["EndpointStatus"] == "Deleting":
                self.resources.catalog.delete("endpoint", name)
                continue
            if doc["EndpointStatus"] == "Failed":
                continue
            try:
                config, models = self._resolve(None, doc["EndpointConfigName"])
            except ControlValidation as exc:
                self._set_status(name, "Failed", FailureReason=exc.message)
                continue
            config = _desired(config, doc)
            self._set_status(name, "Creating")
            self._schedule(name, functools.partial(self._deploy, name, config, models, creating=True))

    async def close(self) -> None:
        """Wait for background work to end."""
        while self._work:
            await asyncio.gather(*self._work.values(), return_exceptions=True)

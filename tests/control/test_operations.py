from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelyard.control.catalog import SCHEMA_VERSION, Catalog
from modelyard.control.endpoints import Deployer
from modelyard.control.operations import ControlPlane
from modelyard.errors import ControlValidation, ValidationError

pytestmark = pytest.mark.anyio


class FakeDeployer(Deployer):
    def __init__(self) -> None:
        self.running: dict[str, dict[str, Any]] = {}
        self.fail: str | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def deploy(self, endpoint: str, config: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
        await self.gate.wait()
        if self.fail:
            raise ValidationError(self.fail)
        self.running[endpoint] = config

    async def undeploy(self, endpoint: str) -> None:
        self.running.pop(endpoint, None)


@pytest.fixture
def plane(tmp_path: Path) -> ControlPlane:
    return ControlPlane(Catalog(tmp_path / "control.sqlite3"), FakeDeployer())


async def setup_endpoint(plane: ControlPlane, name: str = "houses") -> None:
    container = {"Image": "xgboost", "ModelDataUrl": "s3://bucket/mme/", "Mode": "MultiModel"}
    await plane.call("CreateModel", {"ModelName": "m1", "Containers": [container]})
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": "m1",
        "InstanceType": "ml.m4.xlarge",
        "InitialInstanceCount": 2,
        "InitialVariantWeight": 1,
    }
    await plane.call("CreateEndpointConfig", {"EndpointConfigName": "c1", "ProductionVariants": [variant]})
    await plane.call("CreateEndpoint", {"EndpointName": name, "EndpointConfigName": "c1"})


async def test_lifecycle(plane: ControlPlane) -> None:
    await setup_endpoint(plane)
    described = await plane.call("DescribeEndpoint", {"EndpointName": "houses"})
    assert described["EndpointStatus"] in ("Creating", "InService")
    await plane.close()
    described = await plane.call("DescribeEndpoint", {"EndpointName": "houses"})
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == "arn:aws:sagemaker:us-east-1:000000000000:endpoint/houses"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    listed = await plane.call("ListEndpoints", {})
    assert [e["EndpointName"] for e in listed["Endpoints"]] == ["houses"]
    await plane.call("DeleteEndpoint", {"EndpointName": "houses"})
    await plane.close()
    with pytest.raises(
        ControlValidation, match='Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/houses"'
    ):
        await plane.call("DescribeEndpoint", {"EndpointName": "houses"})


async def test_duplicates_and_missing_resources(plane: ControlPlane) -> None:
    await setup_endpoint(plane)
    with pytest.raises(
        ControlValidation,
        match='Cannot create already existing endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/houses"',
    ):
        await plane.call("CreateEndpoint", {"EndpointName": "houses", "EndpointConfigName": "c1"})
    with pytest.raises(ControlValidation, match="Cannot create already existing model"):
        await plane.call("CreateModel", {"ModelName": "m1", "PrimaryContainer": {"ModelDataUrl": "s3://x/"}})
    with pytest.raises(ControlValidation, match="Could not find endpoint configuration"):
        await plane.call("CreateEndpoint", {"EndpointName": "other", "EndpointConfigName": "nope"})
    with pytest.raises(ControlValidation, match="Could not find model"):
        await plane.call("DeleteModel", {"ModelName": "nope"})


@pytest.mark.parametrize(
    ("operation", "body", "message"),
    [
        ("CreateModel", {}, "Value null at 'modelName'"),
        ("CreateModel", {"ModelName": "bad name!"}, "regular expression pattern"),
        ("CreateModel", {"ModelName": "m"}, "exactly one container"),
        ("CreateModel", {"ModelName": "m", "PrimaryContainer": {"Image": "xgboost"}}, "needs a ModelDataUrl"),
        ("CreateEndpointConfig", {"EndpointConfigName": "c"}, "Value null at 'productionVariants'"),
        (
            "CreateEndpointConfig",
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [{"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 0}],
            },
            "initialInstanceCount.*greater than or equal to 1",
        ),
        ("Frobnicate", {}, "not supported"),
    ],
)
async def test_invalid_requests(plane: ControlPlane, operation: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlValidation, match=message):
        await plane.call(operation, body)


async def test_failed_deploy_sets_failure_reason(plane: ControlPlane) -> None:
    assert isinstance(plane.deployer, FakeDeployer)
    plane.deployer.fail = "ModelDataUrl s3://bucket/mme/ is not readable"
    await setup_endpoint(plane)
    await plane.close()
    described = await plane.call("DescribeEndpoint", {"EndpointName": "houses"})
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == "ModelDataUrl s3://bucket/mme/ is not readable"


async def test_update_endpoint_and_failed_update_keeps_serving(plane: ControlPlane) -> None:
    await setup_endpoint(plane)
    await plane.close()
    variant = {"VariantName": "AllTraffic", "ModelName": "m1", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    await plane.call("CreateEndpointConfig", {"EndpointConfigName": "c2", "ProductionVariants": [variant]})
    assert isinstance(plane.deployer, FakeDeployer)
    plane.deployer.gate.clear()  # a slow deployment: still under way when UpdateEndpoint answers
    await plane.call("UpdateEndpoint", {"EndpointName": "houses", "EndpointConfigName": "c2"})
    assert (await plane.call("DescribeEndpoint", {"EndpointName": "houses"}))["EndpointStatus"] == "Updating"
    plane.deployer.gate.set()
    await plane.close()
    described = await plane.call("DescribeEndpoint", {"EndpointName": "houses"})
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c2")
    plane.deployer.fail = "boom"
    await plane.call("UpdateEndpoint", {"EndpointName": "houses", "EndpointConfigName": "c1"})
    await plane.close()
    described = await plane.call("DescribeEndpoint", {"EndpointName": "houses"})
    assert (described["EndpointStatus"], described["EndpointConfigName"], described["FailureReason"]) == (
        "InService",
        "c2",
        "boom",
    )


async def test_update_while_creating_is_refused(plane: ControlPlane) -> None:
    assert isinstance(plane.deployer, FakeDeployer)
    plane.deployer.gate.clear()
    await setup_endpoint(plane)
    with pytest.raises(ControlValidation, match="Cannot update in-progress endpoint"):
        await plane.call("UpdateEndpoint", {"EndpointName": "houses", "EndpointConfigName": "c1"})
    plane.deployer.gate.set()
    await plane.close()


async def test_lists_page_sort_and_filter(plane: ControlPlane) -> None:
    for i in range(5):
        await plane.call("CreateModel", {"ModelName": f"model-{i}", "PrimaryContainer": {"ModelDataUrl": "s3://b/"}})
    first = await plane.call("ListModels", {"MaxResults": 2, "SortBy": "Name", "SortOrder": "Ascending"})
    assert [m["ModelName"] for m in first["Models"]] == ["model-0", "model-1"]
    second = await plane.call(
        "ListModels", {"MaxResults": 2, "SortBy": "Name", "SortOrder": "Ascending", "NextToken": first["NextToken"]}
    )
    assert [m["ModelName"] for m in second["Models"]] == ["model-2", "model-3"]
    assert [m["ModelName"] for m in (await plane.call("ListModels", {"NameContains": "-4"}))["Models"]] == ["model-4"]


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = ControlPlane(Catalog(tmp_path / "c.sqlite3"), FakeDeployer())
    await setup_endpoint(first)
    await first.close()
    deployer = FakeDeployer()
    second = ControlPlane(Catalog(tmp_path / "c.sqlite3"), deployer)
    assert (await second.call("DescribeModel", {"ModelName": "m1"}))["ModelName"] == "m1"
    await second.restore()
    await second.close()
    assert "houses" in deployer.running
    assert (await second.call("DescribeEndpoint", {"EndpointName": "houses"}))["EndpointStatus"] == "InService"


def test_schema_is_versioned(tmp_path: Path) -> None:
    import sqlite3

    Catalog(tmp_path / "c.sqlite3").close()
    db = sqlite3.connect(tmp_path / "c.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer modelyard"):
        Catalog(tmp_path / "c.sqlite3")

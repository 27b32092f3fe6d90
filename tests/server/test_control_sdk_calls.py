"""The calls SDKs and tools make besides the basic lifecycle: tags, weights and capacities, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from modelyard.server.run import BackgroundServer
from tests.conftest import aws_client, free_port, runtime_client, stop_process
from tests.fixtures import ROW, xgb_artifact
from tests.server.test_control_api import FAST, create

ARN = "arn:aws:sagemaker:us-east-1:000000000000"


def test_tags_on_every_kind_persist(serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "state"
    server = serve(None, data_dir=data)
    sm = aws_client("sagemaker", server.url)
    sm.create_model(
        ModelName="m",
        Containers=[{"ModelDataUrl": str(store_dir), "Mode": "MultiModel"}],
        Tags=[{"Key": "team", "Value": "pricing"}],
    )
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large"}],
    )
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c", Tags=[{"Key": "stage", "Value": "prod"}])
    sm.add_tags(ResourceArn=f"{ARN}:endpoint-config/c", Tags=[{"Key": "owner", "Value": "me"}])
    sm.add_tags(ResourceArn=f"{ARN}:model/m", Tags=[{"Key": "team", "Value": "risk"}, {"Key": "tier", "Value": "1"}])
    sm.delete_tags(ResourceArn=f"{ARN}:model/m", TagKeys=["tier", "absent"])
    server.stop()
    sm = aws_client("sagemaker", serve(None, data_dir=data).url)
    assert sm.list_tags(ResourceArn=f"{ARN}:model/m")["Tags"] == [{"Key": "team", "Value": "risk"}]
    assert sm.list_tags(ResourceArn=f"{ARN}:endpoint-config/c")["Tags"] == [{"Key": "owner", "Value": "me"}]
    assert sm.list_tags(ResourceArn=f"{ARN}:endpoint/e")["Tags"] == [{"Key": "stage", "Value": "prod"}]
    with pytest.raises(ClientError) as caught:
        sm.list_tags(ResourceArn=f"{ARN}:model/nothing")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError):
        sm.add_tags(ResourceArn=f"{ARN}:model/m", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])


def test_weights_and_capacities_change_without_a_new_config(
    serve: Callable[..., BackgroundServer], store_dir: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    sm.create_model(ModelName="m", Containers=[{"ModelDataUrl": str(store_dir), "Mode": "MultiModel"}])
    variants = [
        {"VariantName": name, "ModelName": "m", "InstanceType": "ml.m5.large", "InitialVariantWeight": weight}
        for name, weight in (("A", 1.0), ("B", 0.0))
    ]
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants)
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig=FAST)
    client = runtime_client(server.url)

    def variant() -> str:
        answer = client.invoke_endpoint(
            EndpointName="e", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW
        )
        return str(answer["InvokedProductionVariant"])

    assert {variant() for _ in range(5)} == {"A"}
    sm.update_endpoint_weights_and_capacities(
        EndpointName="e",
        DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": 0},
            {"VariantName": "B", "DesiredWeight": 1},
        ],
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig=FAST)
    assert {variant() for _ in range(5)} == {"B"}
    sm.update_endpoint_weights_and_capacities(
        EndpointName="e", DesiredWeightsAndCapacities=[{"VariantName": "B", "DesiredInstanceCount": 3}]
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName="e", WaiterConfig=FAST)
    described = {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName="e")["ProductionVariants"]}
    assert (described["B"]["CurrentInstanceCount"], described["B"]["CurrentWeight"]) == (3, 1.0)
    assert described["A"]["CurrentWeight"] == 0.0
    assert variant() == "B"
    with pytest.raises(ClientError) as caught:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="e", DesiredWeightsAndCapacities=[{"VariantName": "Z", "DesiredWeight": 1}]
        )
    assert "not present" in caught.value.response["Error"]["Message"]


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[str]:
    """``modelyard serve`` in a process of its own: nothing imported yet, as on a user's first run."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--model-root",
            str(tmp_path),
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "server.log").read_text()) from None
            time.sleep(0.05)
    yield url
    stop_process(process)
    log.close()


def test_a_new_endpoint_is_in_service_at_the_waiters_first_poll(fresh_server: str, tmp_path: Path) -> None:
    store = tmp_path / "models"
    store.mkdir()
    (store / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    sm = aws_client("sagemaker", fresh_server)
    create(sm, "houses", str(store), count=2)
    assert sm.describe_endpoint(EndpointName="houses")["EndpointStatus"] == "InService"
    body = (
        runtime_client(fresh_server)
        .invoke_endpoint(EndpointName="houses", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW)[
            "Body"
        ]
        .read()
    )
    assert float(body) > 0


def test_serve_says_what_it_serves_and_whether_the_store_answers(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "server.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard",
                "serve",
                "s3://models/prefix/",
                "--s3-endpoint-url",
                f"http://127.0.0.1:{free_port()}",
                "--port",
                str(port),
                "--memory",
                "3GiB",
                "--data-dir",
                str(tmp_path / "data"),
                "--disk-cache",
                str(tmp_path / "disk"),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"},
        )
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and "does not answer" not in output.read_text():
            time.sleep(0.1)
    finally:
        stop_process(process)
    text = output.read_text()
    assert "serving endpoint modelyard from s3://models/prefix/: memory budget 3.0 GiB" in text
    assert "frameworks: xgboost" in text
    assert "The store s3://models/prefix/ of endpoint modelyard does not answer" in text

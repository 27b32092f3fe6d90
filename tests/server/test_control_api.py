"""The SageMaker control plane through boto3's `sagemaker` client, against a real server."""

from __future__ import annotations

import datetime
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, WaiterError

from modelyard.server.run import BackgroundServer
from tests.conftest import SeaweedS3, aws_client, runtime_client
from tests.fixtures import ROW, booster_bytes, xgb_artifact, xgb_predict

FAST = {"Delay": 0.1, "MaxAttempts": 300}
ROWS = np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32)


def expected(seed: int) -> float:
    return float(xgb_predict(booster_bytes(seed), ROWS)[0])


NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def control(url: str, key: str, secret: str) -> Any:
    return aws_client("sagemaker", url, NO_RETRIES, key=key, secret=secret)


def runtime(url: str, key: str, secret: str) -> Any:
    return aws_client("sagemaker-runtime", url, NO_RETRIES, key=key, secret=secret)


def create(sm: Any, name: str, url: str, *, image: str = "xgboost", count: int = 2, cache: str = "Enabled") -> None:
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::000000000000:role/sagemaker",
        Containers=[
            {
                "Image": image,
                "ModelDataUrl": url,
                "Mode": "MultiModel",
                "MultiModelConfig": {"ModelCacheSetting": cache},
            }
        ],
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "InstanceType": "ml.m4.xlarge",
                "InitialInstanceCount": count,
                "InitialVariantWeight": 1,
                "ModelName": f"{name}-model",
                "VariantName": "AllTraffic",
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


def invoke(client: Any, endpoint: str, target: str) -> float:
    response = client.invoke_endpoint(EndpointName=endpoint, TargetModel=target, ContentType="text/csv", Body=ROW)
    return float(response["Body"].read())


def test_reference_workflow_on_s3(serve: Callable[..., BackgroundServer], seaweed: SeaweedS3) -> None:
    bucket = seaweed.bucket()
    for seed, city in enumerate(["Chicago_IL", "Houston_TX"]):
        seaweed.client.put_object(Bucket=bucket, Key=f"models/{city}.tar.gz", Body=xgb_artifact(seed))
    server = serve(None, store_options=seaweed.store_options())
    sm = aws_client("sagemaker", server.url)
    create(sm, "house-prices-mme", f"s3://{bucket}/models/")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="house-prices-mme", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="house-prices-mme")
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert isinstance(described["CreationTime"], datetime.datetime)
    client = runtime_client(server.url)
    assert invoke(client, "house-prices-mme", "Chicago_IL.tar.gz") == pytest.approx(expected(0))
    assert invoke(client, "house-prices-mme", "Houston_TX.tar.gz") == pytest.approx(expected(1))
    seaweed.client.put_object(Bucket=bucket, Key="models/NewYork_NY.tar.gz", Body=xgb_artifact(2))
    assert invoke(client, "house-prices-mme", "NewYork_NY.tar.gz") == pytest.approx(expected(2))
    text = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    assert 'EndpointName="house-prices-mme",Instance="1",VariantName="AllTraffic"' in text
    assert text.count("# TYPE Invocations_total counter") == 1


def test_control_errors_reach_boto3(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    with pytest.raises(ClientError) as caught:
        sm.describe_endpoint(EndpointName="nope")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert (
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/nope"'
        in caught.value.response["Error"]["Message"]
    )
    create(sm, "houses", str(store_dir), count=1)
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint(EndpointName="houses", EndpointConfigName="houses-config")
    assert "Cannot create already existing endpoint" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        sm.create_model(ModelName="bad name!", Containers=[{"ModelDataUrl": "s3://x/"}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        sm.describe_model(ModelName="missing")
    assert (
        'Could not find model "arn:aws:sagemaker:us-east-1:000000000000:model/missing"'
        in caught.value.response["Error"]["Message"]
    )
    names = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert names == ["houses"]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["houses-config"]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["houses-model"]


@pytest.mark.parametrize(
    ("image", "url", "reason"),
    [
        ("tensorflow", None, "names no handler"),
        ("xgboost", "missing-folder", "is not a folder"),
    ],
)
def test_bad_models_fail_the_endpoint_with_a_reason(
    serve: Callable[..., BackgroundServer], store_dir: Path, image: str, url: str | None, reason: str
) -> None:
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    create(sm, "broken", str(store_dir.parent / url) if url else str(store_dir), image=image, count=1)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="broken", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="broken")
    assert described["EndpointStatus"] == "Failed"
    assert reason in described["FailureReason"]


def test_endpoints_survive_a_restart(serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    data = tmp_path / "state"
    first = serve(None, data_dir=data)
    create(aws_client("sagemaker", first.url), "houses", str(store_dir), count=1)
    aws_client("sagemaker", first.url).get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    first.stop()
    second = serve(None, data_dir=data)
    sm = aws_client("sagemaker", second.url)
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["houses-model"]
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    assert invoke(runtime_client(second.url), "houses", "Houston_TX.tar.gz") == pytest.approx(expected(1))


def test_delete_while_traffic_runs(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    create(sm, "houses", str(store_dir), count=2)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    client = runtime_client(server.url)
    outcomes: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                invoke(client, "houses", "Houston_TX.tar.gz")
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    sm.delete_endpoint(EndpointName="houses")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="houses", WaiterConfig=FAST)
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert "ok" in outcomes
    assert set(outcomes) <= {"ok", "ValidationError", "ServiceUnavailable"}  # never a 500
    assert outcomes[-1] == "ValidationError"
    with pytest.raises(ClientError) as caught:
        invoke(client, "houses", "Houston_TX.tar.gz")
    assert "Endpoint houses of account 000000000000 not found" in caught.value.response["Error"]["Message"]


def test_update_endpoint_and_variant_routing(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    create(sm, "houses", str(store_dir), count=1)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    sm.create_endpoint_config(
        EndpointConfigName="two-variants",
        ProductionVariants=[
            {
                "VariantName": "A",
                "ModelName": "houses-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            },
            {
                "VariantName": "B",
                "ModelName": "houses-model",
                "InstanceType": "ml.c5.large",
                "InitialInstanceCount": 3,
                "InitialVariantWeight": 0,
            },
        ],
    )
    sm.update_endpoint(EndpointName="houses", EndpointConfigName="two-variants")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    described = sm.describe_endpoint(EndpointName="houses")
    assert [v["CurrentInstanceCount"] for v in described["ProductionVariants"]] == [1, 3]
    client = runtime_client(server.url)
    plain = client.invoke_endpoint(
        EndpointName="houses", TargetModel="Houston_TX.tar.gz", Body=ROW, ContentType="text/csv"
    )
    assert plain["InvokedProductionVariant"] == "A"  # B has weight 0
    chosen = client.invoke_endpoint(
        EndpointName="houses", TargetModel="Houston_TX.tar.gz", Body=ROW, ContentType="text/csv", TargetVariant="B"
    )
    assert chosen["InvokedProductionVariant"] == "B"


@pytest.fixture
def secured(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    (store_dir / "eu").mkdir()
    (store_dir / "eu" / "Berlin.tar.gz").write_bytes(xgb_artifact(2))
    keys = [
        {"id": "ADMIN", "secret": "admin-secret"},
        {"id": "EUONLY", "secret": "eu-secret", "target_prefixes": ["eu/"], "control": False},
    ]
    server = serve(store_dir, access_keys=keys, endpoint_name="houses")
    return server


def test_sigv4_right_key_passes_and_wrong_ones_are_refused(secured: BackgroundServer) -> None:
    assert invoke(runtime(secured.url, "ADMIN", "admin-secret"), "houses", "Houston_TX.tar.gz") == pytest.approx(
        expected(1)
    )
    for key, secret, code in (
        ("ADMIN", "wrong", "InvalidSignatureException"),
        ("NOBODY", "x", "UnrecognizedClientException"),
    ):
        with pytest.raises(ClientError) as caught:
            invoke(runtime(secured.url, key, secret), "houses", "Houston_TX.tar.gz")
        assert caught.value.response["Error"]["Code"] == code
        with pytest.raises(ClientError) as caught:
            control(secured.url, key, secret).list_endpoints()
        assert caught.value.response["Error"]["Code"] == code
    assert control(secured.url, "ADMIN", "admin-secret").list_endpoints()["Endpoints"] == []


def _signed_request(url: str, body: bytes, when: datetime.datetime, monkeypatch: pytest.MonkeyPatch) -> AWSRequest:
    import botocore.auth

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "Houston_TX.tar.gz"}
    request = AWSRequest(method="POST", url=f"{url}/endpoints/houses/invocations", data=body, headers=headers)
    SigV4Auth(Credentials("ADMIN", "admin-secret"), "sagemaker", "us-east-1").add_auth(request)
    return request


def _send(request: AWSRequest, body: bytes) -> tuple[int, str]:
    sent = urllib.request.Request(str(request.url), data=body, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(sent) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers["x-amzn-ErrorType"]


def test_expired_and_tampered_requests_are_refused(secured: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert _send(_signed_request(secured.url, ROW, now, monkeypatch), ROW) == (200, "")
    old = _signed_request(secured.url, ROW, now - datetime.timedelta(minutes=20), monkeypatch)
    assert _send(old, ROW) == (403, "InvalidSignatureException")
    fresh = _signed_request(secured.url, ROW, now, monkeypatch)
    assert _send(fresh, b"2020,1000,1,1,0.1,0") == (403, "InvalidSignatureException")


def test_key_limited_to_a_prefix(secured: BackgroundServer) -> None:
    client = runtime(secured.url, "EUONLY", "eu-secret")
    assert invoke(client, "houses", "eu/Berlin.tar.gz") == pytest.approx(expected(2))
    with pytest.raises(ClientError) as caught:
        invoke(client, "houses", "Houston_TX.tar.gz")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as caught:
        control(secured.url, "EUONLY", "eu-secret").list_models()
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"

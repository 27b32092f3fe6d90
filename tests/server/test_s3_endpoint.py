"""The reference workflow against a real S3 server (SeaweedFS) with boto3 on both sides."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pytest
from botocore.exceptions import ClientError

from modelyard.demo import make_artifact
from modelyard.server.run import BackgroundServer
from tests.conftest import SeaweedS3, runtime_client
from tests.fixtures import ROW, booster_bytes, xgb_artifact, xgb_predict, zero_bomb
from tests.server.helpers import metrics

ROWS = np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32)


def expected(seed: int) -> float:
    return float(xgb_predict(booster_bytes(seed), ROWS)[0])


def test_invoke_models_stored_in_s3(serve: Callable[..., BackgroundServer], seaweed: SeaweedS3) -> None:
    bucket = seaweed.bucket()
    for seed, city in enumerate(["Chicago_IL", "Houston_TX"]):
        seaweed.client.put_object(Bucket=bucket, Key=f"mme/{city}.tar.gz", Body=xgb_artifact(seed))
    server = serve(f"s3://{bucket}/mme/", store_options=seaweed.store_options(), version_check_interval=0.0)
    client = runtime_client(server.url)

    def invoke(target: str) -> float:
        response = client.invoke_endpoint(
            EndpointName="modelyard", TargetModel=target, ContentType="text/csv", Body=ROW
        )
        return float(response["Body"].read())

    assert invoke("Houston_TX.tar.gz") == pytest.approx(expected(1))
    assert invoke("Chicago_IL.tar.gz") == pytest.approx(expected(0))
    assert invoke("Houston_TX.tar.gz") == pytest.approx(expected(1))

    with pytest.raises(ClientError) as caught:
        invoke("NewYork_NY.tar.gz")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    seaweed.client.put_object(Bucket=bucket, Key="mme/NewYork_NY.tar.gz", Body=xgb_artifact(2))
    assert invoke("NewYork_NY.tar.gz") == pytest.approx(expected(2))

    seaweed.client.put_object(Bucket=bucket, Key="mme/Houston_TX.tar.gz", Body=xgb_artifact(3))
    deadline = time.monotonic() + 10
    answers = [invoke("Houston_TX.tar.gz")]
    while answers[-1] != pytest.approx(expected(3)) and time.monotonic() < deadline:
        time.sleep(0.01)
        answers.append(invoke("Houston_TX.tar.gz"))
    assert answers[-1] == pytest.approx(expected(3))
    samples = metrics(server.url)
    assert samples["ModelDownloadingTime_count"] == 4
    assert samples["Invocation5XXErrors_total"] == 0


def test_corrupt_artifact_in_s3(serve: Callable[..., BackgroundServer], seaweed: SeaweedS3) -> None:
    bucket = seaweed.bucket()
    seaweed.client.put_object(Bucket=bucket, Key="bad.tar.gz", Body=b"\x1f\x8bnot gzip")
    server = serve(f"s3://{bucket}/", store_options=seaweed.store_options())
    with pytest.raises(ClientError) as caught:
        runtime_client(server.url).invoke_endpoint(EndpointName="modelyard", TargetModel="bad.tar.gz", Body=ROW)
    assert caught.value.response["Error"]["Code"] == "ValidationError"


def test_unreachable_s3_is_service_unavailable_not_a_crash(serve: Callable[..., BackgroundServer]) -> None:
    options = {"endpoint": "http://127.0.0.1:9", "region": "us-east-1", "access_key_id": "x", "secret_access_key": "y"}
    server = serve("s3://nowhere/", store_options=options, load_wait_timeout=30)
    with pytest.raises(ClientError) as caught:
        runtime_client(server.url).invoke_endpoint(EndpointName="modelyard", TargetModel="m.tar.gz", Body=ROW)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert "Store failed" in caught.value.response["Error"]["Message"]
    assert "127.0.0.1" not in caught.value.response["Error"]["Message"]  # the store's address stays in the log


def test_large_artifacts_and_bombs_stream_from_s3(serve: Callable[..., BackgroundServer], seaweed: SeaweedS3) -> None:
    bucket = seaweed.bucket()
    padding = os.urandom(3 * 1024 * 1024)  # incompressible: the object itself is over 3 MiB, so it is streamed
    large = make_artifact({"xgboost-model": booster_bytes(4), "extra/padding.bin": padding})
    seaweed.client.put_object(Bucket=bucket, Key="Large.tar.gz", Body=large)
    bomb = zero_bomb(tuple((f"part-{i:03d}.bin", 8 * 1024 * 1024) for i in range(64)))  # 512 MiB
    seaweed.client.put_object(Bucket=bucket, Key="bomb.tar.gz", Body=bomb + os.urandom(2 * 1024 * 1024))
    seaweed.client.put_object(Bucket=bucket, Key="Folder/xgboost-model", Body=booster_bytes(5))
    seaweed.client.put_object(Bucket=bucket, Key="Folder/extra/padding.bin", Body=padding)
    server = serve(f"s3://{bucket}/", store_options=seaweed.store_options(), memory="16MiB")
    client = runtime_client(server.url)

    def invoke(target: str) -> float:
        return float(client.invoke_endpoint(EndpointName="modelyard", TargetModel=target, Body=ROW)["Body"].read())

    assert invoke("Large.tar.gz") == pytest.approx(expected(4))
    assert invoke("Folder/") == pytest.approx(expected(5))
    with pytest.raises(ClientError) as caught:
        invoke("bomb.tar.gz")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "larger than 67108864 bytes unpacked" in caught.value.response["Error"]["Message"]

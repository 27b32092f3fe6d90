from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from modelyard.demo import make_artifact as tar_gz
from modelyard.server.run import BackgroundServer
from tests import codecs_reference as reference
from tests.conftest import aws_client, runtime_client
from tests.fixtures import ROW, booster_bytes, digits_booster_bytes, xgb_artifact, xgb_predict
from tests.server.helpers import metrics

ROW_ARRAY = np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32)


def expected(seed: int) -> float:
    return float(xgb_predict(booster_bytes(seed), ROW_ARRAY)[0])


def invoke(client: Any, target: str | None = "Houston_TX.tar.gz", body: bytes = ROW, **extra: Any) -> Any:
    args: dict[str, Any] = {"EndpointName": "modelyard", "ContentType": "text/csv", "Body": body, **extra}
    if target is not None:
        args["TargetModel"] = target
    return client.invoke_endpoint(**args)


def predicted(response: Any) -> float:
    return float(response["Body"].read())


@pytest.fixture
def store(store_dir: Path) -> Path:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (store_dir / "Chicago_IL.tar.gz").write_bytes(xgb_artifact(1))
    (store_dir / "eu" / "de").mkdir(parents=True)
    (store_dir / "eu" / "de" / "Berlin.tar.gz").write_bytes(xgb_artifact(2))
    (store_dir / "corrupt.tar.gz").write_bytes(b"\x1f\x8b\x08\x00this is not gzip data")
    (store_dir / "empty.tar.gz").write_bytes(tar_gz({"README.txt": b"no model here"}))
    return store_dir


@pytest.fixture
def server(serve: Callable[..., BackgroundServer], store: Path) -> BackgroundServer:
    return serve(store)


def test_invoke_with_boto3(server: BackgroundServer) -> None:
    client = runtime_client(server.url)
    response = invoke(client)
    assert predicted(response) == pytest.approx(expected(0))
    assert response["ContentType"].startswith("text/csv")
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert predicted(invoke(client, "Chicago_IL.tar.gz")) == pytest.approx(expected(1))
    assert predicted(invoke(client, "eu/de/Berlin.tar.gz")) == pytest.approx(expected(2))


def test_many_rows_and_json_out(server: BackgroundServer) -> None:
    client = runtime_client(server.url)
    response = invoke(client, body=ROW + b"\n" + ROW + b"\n", Accept="application/json")
    doc = json.loads(response["Body"].read())
    assert [p["score"] for p in doc["predictions"]] == pytest.approx([expected(0)] * 2)
    assert response["ContentType"] == "application/json"


@pytest.mark.parametrize(
    ("kwargs", "code", "status", "message"),
    [
        ({"EndpointName": "other"}, "ValidationError", 400, "Endpoint other of account"),
        ({"target": None}, "ValidationError", 400, "target model is missing"),
        ({"target": "Dallas_TX.tar.gz"}, "ValidationError", 400, "Could not find model data"),
        ({"body": b"1994,3188,abc,1.5,1.62,3"}, "ModelError", 424, "Row 1, column 3"),
        ({"ContentType": "image/png"}, "ValidationError", 400, "Content type 'image/png' is not supported"),
        ({"Accept": "image/png"}, "ValidationError", 400, "Accept 'image/png' is not supported"),
        ({"body": b"1" * (6_291_456 + 1)}, "ValidationError", 400, "exceeds the limit of 6291456 bytes"),
        ({"target": "corrupt.tar.gz"}, "ValidationError", 400, "not a readable tar archive"),
        ({"target": "empty.tar.gz"}, "ValidationError", 400, "no model file"),
        ({"target": "x" * 1025}, "ValidationError", 400, "longer than 1024"),
    ],
)
def test_errors_reach_boto3_with_the_right_code(
    server: BackgroundServer, kwargs: dict[str, Any], code: str, status: int, message: str
) -> None:
    client = runtime_client(server.url)
    assert predicted(invoke(client)) == pytest.approx(expected(0))
    before = metrics(server.url)
    args = {"target": "Houston_TX.tar.gz", "body": ROW, **kwargs}
    with pytest.raises(ClientError) as caught:
        invoke(client, args.pop("target"), args.pop("body"), **args)
    error: Any = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert message in error["Error"]["Message"]
    if code == "ModelError":
        assert error["OriginalStatusCode"] == 400
    # the server and its cache are intact
    assert predicted(invoke(client)) == pytest.approx(expected(0))
    after = metrics(server.url)
    assert after["LoadedModelCount"] == before["LoadedModelCount"]
    counted = "EndpointName" not in kwargs  # another endpoint's errors are not this one's
    assert after["Invocation4XXErrors_total"] == before["Invocation4XXErrors_total"] + counted
    assert after["Invocation5XXErrors_total"] == 0


def test_model_not_ready_then_served(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, load_wait_timeout=0.0001)
    client = runtime_client(server.url)
    with pytest.raises(ClientError) as caught:
        invoke(client)
    assert caught.value.response["Error"]["Code"] == "ModelNotReadyException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    deadline = time.monotonic() + 10
    while metrics(server.url)["LoadedModelCount"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert predicted(invoke(client)) == pytest.approx(expected(0))


def test_overload_is_service_unavailable(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, max_inflight=0)
    with pytest.raises(ClientError) as caught:
        invoke(runtime_client(server.url))
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert metrics(server.url)["Invocation5XXErrors_total"] == 1


@pytest.mark.parametrize("target", ["../x", "/etc/passwd", "a/../../b", "%2e%2e/secret.tar.gz", "..%2fsecret.tar.gz"])
def test_path_traversal_is_refused(server: BackgroundServer, store: Path, tmp_path: Path, target: str) -> None:
    (tmp_path / "secret.tar.gz").write_bytes(xgb_artifact(0))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ClientError) as caught:
        invoke(runtime_client(server.url), target)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_tar_member_pointing_outside_is_refused(server: BackgroundServer, store: Path, tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("../../../../escaped.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
        link = tarfile.TarInfo("xgboost-model")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    (store / "evil.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(ClientError) as caught:
        invoke(runtime_client(server.url), "evil.tar.gz")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "outside its folder" in caught.value.response["Error"]["Message"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_100_concurrent_requests_for_a_cold_model_load_it_once(server: BackgroundServer) -> None:
    client = aws_client(
        "sagemaker-runtime", server.url, Config(max_pool_connections=100, retries={"total_max_attempts": 1})
    )
    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda _: predicted(invoke(client, "Chicago_IL.tar.gz")), range(100)))
    assert results == [pytest.approx(expected(1))] * 100
    samples = metrics(server.url)
    assert samples["ModelLoads_total"] == 1
    assert samples["ModelDownloadingTime_count"] == 1
    assert samples["ModelCacheHit_total"] + samples["ModelCacheMiss_total"] == 100
    assert samples["ModelLoadingWaitTime_count"] == samples["ModelCacheMiss_total"]


def test_300_models_through_a_budget_for_50(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    artifact = xgb_artifact(3)
    for i in range(300):
        (store_dir / f"m{i:03d}.tar.gz").write_bytes(artifact)
    probe = serve(store_dir)
    invoke(runtime_client(probe.url), "m000.tar.gz")
    size = metrics(probe.url)["MemoryUsedBytes"]
    budget = int(size * 50.5)
    server = serve(store_dir, memory=budget)
    client = runtime_client(server.url)
    peak = 0.0
    for i in range(300):
        assert predicted(invoke(client, f"m{i:03d}.tar.gz")) == pytest.approx(expected(3))
        if i % 10 == 0:
            peak = max(peak, metrics(server.url)["MemoryUsedBytes"])
    samples = metrics(server.url)
    assert max(peak, samples["MemoryUsedBytes"]) <= budget
    assert samples["MemoryBudgetBytes"] == budget
    assert 30 <= samples["LoadedModelCount"] <= 60  # measured sizes vary by a few KiB
    assert samples["ModelLoads_total"] == 300
    assert samples["ModelEvictions_total[capacity]"] == 300 - samples["LoadedModelCount"]
    assert samples["ModelUnloadingTime_count"] == samples["ModelEvictions_total[capacity]"]


def test_new_and_overwritten_artifacts_are_served_without_restart(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    server = serve(store, version_check_interval=0.0)
    client = runtime_client(server.url)
    with pytest.raises(ClientError):
        invoke(client, "NewYork_NY.tar.gz")
    shutil.copy(store / "Chicago_IL.tar.gz", store / "NewYork_NY.tar.gz")
    assert predicted(invoke(client, "NewYork_NY.tar.gz")) == pytest.approx(expected(1))

    (store / "Houston_TX.new").write_bytes(xgb_artifact(4))
    assert predicted(invoke(client)) == pytest.approx(expected(0))
    (store / "Houston_TX.new").replace(store / "Houston_TX.tar.gz")
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.append(predicted(invoke(client)))  # every request during the switch succeeds
        if seen[-1] == pytest.approx(expected(4)):
            break
        time.sleep(0.005)
    assert seen[-1] == pytest.approx(expected(4))
    assert all(v == pytest.approx(expected(0)) or v == pytest.approx(expected(4)) for v in seen)
    assert metrics(server.url)["ModelEvictions_total[replaced]"] == 1


@pytest.mark.parametrize("accept", ["text/csv", "application/json"])
def test_a_maximum_size_csv_body_round_trips_through_xgboost(
    serve: Callable[..., BackgroundServer], store_dir: Path, accept: str
) -> None:
    (store_dir / "digits.tar.gz").write_bytes(tar_gz({"xgboost-model": digits_booster_bytes()}))
    server = serve(store_dir)
    rows = np.random.default_rng(5).integers(0, 10, size=(500_000, 6))
    body = "\n".join(",".join(map(str, row)) for row in rows.tolist()).encode()
    assert 5_900_000 < len(body) <= 6_291_456
    response = invoke(runtime_client(server.url), "digits.tar.gz", body=body, Accept=accept)
    answer = response["Body"].read()
    predictions = xgb_predict(digits_booster_bytes(), rows.astype(np.float32))
    assert len(predictions) == 500_000
    assert len(np.unique(predictions)) > 100  # the rows reach many leaves: a real test of the values
    written = reference.encode_csv(predictions) if accept == "text/csv" else reference.encode_json(predictions)
    assert answer == written
    assert response["ContentType"] == accept

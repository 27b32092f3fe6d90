from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.server.run import BackgroundServer
from tests.fixtures import ROW, booster_bytes, xgb_artifact, xgb_predict
from tests.server.helpers import metrics

EXPECTED = float(xgb_predict(booster_bytes(0), np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32))[0])


def call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def server(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (store_dir / "Chicago_IL.tar.gz").write_bytes(xgb_artifact(1))
    return serve(store_dir)


def load(server: BackgroundServer, name: str, url: str) -> tuple[int, Any, bytes]:
    body = json.dumps({"model_name": name, "url": url}).encode()
    return call(f"{server.url}/models", "POST", body, {"Content-Type": "application/json"})


def test_ping(server: BackgroundServer) -> None:
    assert call(f"{server.url}/ping")[0] == 200


def test_load_list_describe_invoke_delete(server: BackgroundServer) -> None:
    status, _, _ = load(server, "houston", "Houston_TX.tar.gz")
    assert status == 200
    status, _, body = call(f"{server.url}/models")
    assert [m["modelName"] for m in json.loads(body)["models"]] == ["houston"]
    status, _, body = call(f"{server.url}/models/houston")
    assert json.loads(body)[0]["status"] == "Loaded"
    status, _, body = call(f"{server.url}/models/houston/invoke", "POST", ROW, {"Content-Type": "text/csv"})
    assert status == 200
    assert float(body) == pytest.approx(EXPECTED)
    assert call(f"{server.url}/models/houston", "DELETE")[0] == 200
    assert metrics(server.url)["LoadedModelCount"] == 0
    status, headers, body = call(f"{server.url}/models/houston", "DELETE")
    assert status == 404
    assert json.loads(body)["__type"] == headers["x-amzn-ErrorType"]


def test_load_twice_is_a_conflict(server: BackgroundServer) -> None:
    assert load(server, "houston", "Houston_TX.tar.gz")[0] == 200
    assert load(server, "houston", "Houston_TX.tar.gz")[0] == 409


def test_model_over_the_budget_is_507(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir, memory=1000)
    status, _, body = load(server, "houston", "Houston_TX.tar.gz")
    assert status == 507
    assert "whole budget" in json.loads(body)["message"]


def test_store_url_is_accepted_as_model_url(server: BackgroundServer, store_dir: Path) -> None:
    assert load(server, "chicago", f"{store_dir}/Chicago_IL.tar.gz")[0] == 200


@pytest.mark.parametrize("body", [b"not json", b'{"url": "x"}', b"[]"])
def test_bad_load_requests(server: BackgroundServer, body: bytes) -> None:
    status, headers, _ = call(f"{server.url}/models", "POST", body)
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationError")


def test_invocations_route_with_target_header(server: BackgroundServer) -> None:
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "Houston_TX.tar.gz"}
    status, response_headers, body = call(f"{server.url}/invocations", "POST", ROW, headers)
    assert status == 200
    assert float(body) == pytest.approx(EXPECTED)
    assert response_headers["x-amzn-RequestId"]


@pytest.mark.parametrize(("path", "method"), [("/nowhere", "GET"), ("/ping", "DELETE")])
def test_unknown_routes_are_aws_shaped(server: BackgroundServer, path: str, method: str) -> None:
    status, headers, body = call(f"{server.url}{path}", method)
    assert status in (404, 405)
    assert json.loads(body)["__type"] == headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_metrics_have_no_label_per_model(server: BackgroundServer) -> None:
    call(f"{server.url}/invocations", "POST", ROW, {"X-Amzn-SageMaker-Target-Model": "missing.tar.gz"})
    before = call(f"{server.url}/metrics")[2].count(b"\n")
    for i in range(200):
        call(f"{server.url}/invocations", "POST", ROW, {"X-Amzn-SageMaker-Target-Model": f"missing-{i}.tar.gz"})
    text = call(f"{server.url}/metrics")[2]
    assert text.count(b"\n") == before
    assert b"missing-" not in text
    assert metrics(server.url)["Invocation4XXErrors_total"] == 201


def test_cache_listing_and_invalidate(server: BackgroundServer) -> None:
    headers = {"X-Amzn-SageMaker-Target-Model": "Houston_TX.tar.gz", "Content-Type": "text/csv"}
    assert call(f"{server.url}/invocations", "POST", ROW, headers)[0] == 200
    doc = json.loads(call(f"{server.url}/cache")[2])
    assert [m["target"] for m in doc["models"]] == ["Houston_TX.tar.gz"]
    assert doc["models"][0]["memoryBytes"] > 0
    assert doc["memoryUsedBytes"] == doc["models"][0]["memoryBytes"]
    assert call(f"{server.url}/cache/Houston_TX.tar.gz", "DELETE")[0] == 200
    doc = json.loads(call(f"{server.url}/cache")[2])
    assert doc["models"] == []
    assert doc["diskUsedBytes"] == 0
    assert call(f"{server.url}/cache/..%2fx", "DELETE")[0] == 400
    assert call(f"{server.url}/invocations", "POST", ROW, headers)[0] == 200
    assert metrics(server.url)["ModelDownloadingTime_count"] == 2

"""Every endpoint in every view: control-plane endpoints in /stats, /cache, the series, V2 and the dashboard."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelyard.server.run import BackgroundServer
from tests.conftest import aws_client, runtime_client
from tests.fixtures import ROW, booster_bytes, xgb_artifact, xgb_predict
from tests.server.test_control_api import FAST, create

CITIES = [f"City{i}.tar.gz" for i in range(8)]
ROWS = np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32)


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def two_endpoints(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    """No default endpoint; ``houses`` on 2 instances and ``flats`` on 1, both with traffic."""
    for seed, city in enumerate(CITIES):
        (store_dir / city).write_bytes(xgb_artifact(seed))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    create(sm, "houses", str(store_dir), count=2)
    create(sm, "flats", str(store_dir), count=1)
    for name in ("houses", "flats"):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    client = runtime_client(server.url)
    for city in CITIES:
        client.invoke_endpoint(EndpointName="houses", TargetModel=city, ContentType="text/csv", Body=ROW)
    client.invoke_endpoint(EndpointName="flats", TargetModel=CITIES[0], ContentType="text/csv", Body=ROW)
    return server


def test_views_take_the_endpoint(two_endpoints: BackgroundServer) -> None:
    url = two_endpoints.url
    status, doc = get(f"{url}/stats")
    assert status == 400
    assert "houses" in doc["message"]
    assert "flats" in doc["message"]
    listed = get(f"{url}/stats/endpoints")[1]["endpoints"]
    assert [(e["name"], [v["instances"] for v in e["variants"]]) for e in listed] == [
        ("flats", [["0"]]),
        ("houses", [["0", "1"]]),
    ]
    summary = get(f"{url}/stats?endpoint=houses")[1]
    assert (summary["endpoint"], summary["instanceCount"], summary["invocations"]) == ("houses", 2, 8)
    assert summary["loadedModels"] == 8
    assert sum(i["loadedModels"] for i in summary["instances"]) == 8
    assert all(i["loadedModels"] < 8 for i in summary["instances"])  # each model on one instance
    one = get(f"{url}/stats?endpoint=houses&variant=AllTraffic&instance=1")[1]
    assert one["instanceCount"] == 1
    assert one["invocations"] == summary["instances"][1]["invocations"]
    assert get(f"{url}/stats?endpoint=flats")[1]["invocations"] == 1
    models = get(f"{url}/stats/models?endpoint=houses&sort=target&order=asc&limit=5")[1]
    assert models["total"] == 8
    assert [m["target"] for m in models["models"]] == sorted(CITIES)[:5]
    assert {m["instance"] for m in get(f"{url}/stats/models?endpoint=houses")[1]["models"]} == {"0", "1"}
    assert get(f"{url}/stats/models/{CITIES[3]}?endpoint=houses")[1]["invocations"] == 1
    cache = get(f"{url}/cache?endpoint=houses")[1]
    assert sorted(m["target"] for m in cache["models"]) == sorted(CITIES)
    assert get(f"{url}/stats?endpoint=nope")[0] == 400
    assert get(f"{url}/stats?endpoint=houses&instance=7")[0] == 400


def test_series_sum_the_instances(two_endpoints: BackgroundServer) -> None:
    deadline = time.monotonic() + 10
    while True:
        doc = get(f"{two_endpoints.url}/stats/series?since=0&endpoint=houses")[1]
        if doc["columns"]["time"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    loaded = doc["columns"]["loaded"]
    assert loaded
    assert loaded[-1] == 8  # both instances' models
    budget = get(f"{two_endpoints.url}/stats?endpoint=houses")[1]["memoryBudgetBytes"]
    assert doc["columns"]["memoryBudget"][-1] == budget


def test_v2_reaches_any_endpoint(two_endpoints: BackgroundServer) -> None:
    base = two_endpoints.url.removeprefix("http://")
    houses = triton.InferenceServerClient(f"{base}/endpoints/houses")
    assert houses.is_server_ready()
    for seed, city in enumerate(CITIES[:3]):
        tensor = triton.InferInput("rows", list(ROWS.shape), "FP32")
        tensor.set_data_from_numpy(ROWS, binary_data=True)
        answer = houses.infer(city, [tensor]).as_numpy("predict")
        assert answer is not None
        assert answer[0] == pytest.approx(float(xgb_predict(booster_bytes(seed), ROWS)[0]))
    assert {m["name"] for m in houses.get_model_repository_index()} == set(CITIES)
    assert houses.get_model_metadata(CITIES[0])["inputs"][0]["shape"] == [-1, 6]
    with pytest.raises(InferenceServerException, match="several endpoints"):
        triton.InferenceServerClient(base).get_model_repository_index()  # no default: name one


def test_v2_statistics_and_configuration(two_endpoints: BackgroundServer) -> None:
    houses = triton.InferenceServerClient(two_endpoints.url.removeprefix("http://") + "/endpoints/houses")
    stats = houses.get_inference_statistics(CITIES[0])["model_stats"]
    assert [(s["name"], s["inference_count"]) for s in stats] == [(CITIES[0], 1)]
    assert stats[0]["inference_stats"]["success"]["ns"] > 0
    every = houses.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} == set(CITIES)
    config = houses.get_model_config(CITIES[1])
    assert config["input"] == [{"name": "input-0", "data_type": "TYPE_FP32", "dims": [-1, 6]}]
    assert config["max_batch_size"] == 0


DTYPES = ["FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


@pytest.mark.parametrize("datatype", DTYPES)
def test_binary_tensors_at_any_offset(serve: Callable[..., BackgroundServer], store_dir: Path, datatype: str) -> None:
    """tritonclient's binary tensors follow a JSON header of any length: every offset mod 8 works."""
    (store_dir / "m.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir)
    rows = np.array([[99, 120, 5, 1, 2, 3]])  # representable in every datatype, INT8 included
    expected = float(xgb_predict(booster_bytes(0), rows.astype(np.float32))[0])
    floats = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
    dtype = floats[datatype] if datatype in floats else np.dtype(datatype.lower())
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    for padding in range(8):  # the request id changes the header's length
        tensor = triton.InferInput("rows", list(rows.shape), datatype)
        tensor.set_data_from_numpy(rows.astype(dtype), binary_data=True)
        answer = client.infer("m.tar.gz", [tensor], request_id="x" * padding).as_numpy("predict")
        assert answer is not None
        assert float(answer[0]) == pytest.approx(expected, rel=1e-3)

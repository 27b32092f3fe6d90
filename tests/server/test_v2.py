"""The Open Inference Protocol (KServe V2) routes, driven by tritonclient and by raw HTTP."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelyard.demo import make_artifact
from modelyard.errors import ValidationError
from modelyard.server import tensors
from modelyard.server.run import BackgroundServer
from tests.fixtures import (
    inference_artifact,
    inference_weights,
    lightgbm_predict,
    lightgbm_text,
    onnx_graph,
    sample_rows,
    sklearn_model,
)
from tests.server.helpers import metrics

ROWS = sample_rows()
LGB = "eu/de/Berlin.tar.gz"


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    """Status and JSON body of one request."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def infer_body(rows: Any, datatype: str = "FP64", name: str = "rows", **extra: Any) -> bytes:
    array = np.asarray(rows)
    tensor = {"name": name, "datatype": datatype, "shape": list(array.shape), "data": array.reshape(-1).tolist()}
    return json.dumps({"inputs": [tensor], **extra}).encode()


@pytest.fixture
def server(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    (store_dir / "eu" / "de").mkdir(parents=True)
    (store_dir / LGB).write_bytes(make_artifact({"model.txt": lightgbm_text(0)}))
    (store_dir / "labels.pkl").write_bytes(pickle.dumps(sklearn_model(0, "classifier")))
    (store_dir / "text.onnx").write_bytes(onnx_graph("text"))
    (store_dir / "custom.tar.gz").write_bytes(inference_artifact(0))
    return serve(store_dir, trust_store=True)


@pytest.fixture
def client(server: BackgroundServer) -> Any:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def test_health_and_server_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "modelyard"
    assert "model_repository" in meta["extensions"]


@pytest.mark.parametrize("binary", [True, False])
def test_first_infer_loads_on_demand(client: Any, binary: bool) -> None:
    assert not client.is_model_ready(LGB)
    tensor = triton.InferInput("rows", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=binary)
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary)]
    result = client.infer(LGB, [tensor], outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("predict"), lightgbm_predict(lightgbm_text(0), ROWS))
    response = result.get_response()
    assert response["id"] == "r-1"
    assert response["model_name"] == LGB
    assert client.is_model_ready(LGB)
    meta = client.get_model_metadata(LGB)
    assert meta["platform"] == "lightgbm"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 6]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "raw_score"]


def test_fp32_rows_and_bytes_labels(client: Any) -> None:
    pipeline = sklearn_model(0, "classifier")
    rows32 = ROWS.astype(np.float32)
    tensor = triton.InferInput("rows", list(rows32.shape), "FP32")
    tensor.set_data_from_numpy(rows32)
    for binary in (True, False):
        wanted = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("predict", "predict_proba")]
        result = client.infer("labels.pkl", [tensor], outputs=wanted)
        labels = [v.decode() if binary else v for v in result.as_numpy("predict")]  # JSON data is str
        assert labels == pipeline.predict(rows32).tolist()
        np.testing.assert_array_equal(result.as_numpy("predict_proba"), pipeline.predict_proba(rows32))


def test_string_tensors_to_onnx(client: Any) -> None:
    words = np.array([b"fair", b"price"], dtype=np.object_)
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(words)
    assert client.infer("text.onnx", [tensor]).as_numpy("same").tolist() == [b"fair", b"price"]


def test_inference_py_gets_tensors_in_predict_fn(client: Any) -> None:
    tensor = triton.InferInput("rows", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("custom.tar.gz", [tensor])
    assert result.as_numpy("predict").tolist() == (ROWS @ inference_weights(0)).tolist()


def test_repository_load_index_unload(client: Any, server: BackgroundServer) -> None:
    client.load_model("labels.pkl")
    assert client.is_model_ready("labels.pkl")
    with urllib.request.urlopen(f"{server.url}/cache", timeout=10) as response:
        assert [m["pinned"] for m in json.loads(response.read())["models"]] == [True]  # stays until unloaded
    index = client.get_model_repository_index()
    assert [(m["name"], m["state"]) for m in index] == [("labels.pkl", "READY")]
    client.unload_model("labels.pkl")
    assert not client.is_model_ready("labels.pkl")
    with pytest.raises(InferenceServerException) as caught:
        client.unload_model("labels.pkl")
    assert caught.value.status() == "404"
    assert "not loaded" in str(caught.value.message())
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("missing.tar.gz")
    assert caught.value.status() == "400"
    assert "Could not find model data" in str(caught.value.message())


def test_url_encoded_names(server: BackgroundServer) -> None:
    status, doc = call(f"{server.url}/v2/models/eu%2Fde%2FBerlin.tar.gz/infer", "POST", infer_body(ROWS))
    assert status == 200
    assert doc["outputs"][0]["data"] == lightgbm_predict(lightgbm_text(0), ROWS).tolist()
    assert call(f"{server.url}/v2/models/eu%2Fde%2FBerlin.tar.gz/ready")[0] == 200


def test_gzip_body(server: BackgroundServer) -> None:
    body = gzip.compress(infer_body(ROWS))
    status, doc = call(f"{server.url}/v2/models/{LGB}/infer", "POST", body, {"Content-Encoding": "gzip"})
    assert status == 200
    assert doc["outputs"][0]["shape"] == [3]


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        (LGB, b"{not json", 400, "not valid JSON"),
        (LGB, b'{"inputs": []}', 400, 'no "inputs" list'),
        (LGB, infer_body(ROWS, "FP128"), 400, "datatype 'FP128' is not one of"),
        (
            LGB,
            json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 6], "data": [1.0] * 11}]}).encode(),
            400,
            "shape [2, 6] holds 12 values, the data has 11",
        ),
        (LGB, infer_body([["a"] * 6], "FP64", "x"), 400, "Input 'x': FP64 data cannot hold str values"),
        (LGB, infer_body([[1.0, 2.0]]), 424, "Input 'rows' has rows of 2 values, the model expects 6 features"),
        (LGB, infer_body(ROWS, outputs=[{"name": "leaf"}]), 424, "no output 'leaf'"),
        ("missing.tar.gz", infer_body(ROWS), 400, "Could not find model data"),
        ("../secret.tar.gz", infer_body(ROWS), 400, "relative path inside the store"),
        ("custom.tar.gz", infer_body([[1.0, 2.0]]), 424, "predict_fn raised ValueError: expected 6 features, got 2"),
    ],
)
def test_errors_take_the_v2_shape(server: BackgroundServer, name: str, body: bytes, status: int, message: str) -> None:
    before = metrics(server.url)
    got, doc = call(f"{server.url}/v2/models/{name}/infer", "POST", body)
    assert (got, list(doc)) == (status, ["error"])
    assert message in doc["error"]
    after = metrics(server.url)
    assert after["Invocation4XXErrors_total"] == before["Invocation4XXErrors_total"] + 1
    assert after["Invocation5XXErrors_total"] == 0


def test_infers_are_counted_as_invocations(server: BackgroundServer) -> None:
    before = metrics(server.url)["Invocations_total"]
    for _ in range(3):
        assert call(f"{server.url}/v2/models/{LGB}/infer", "POST", infer_body(ROWS))[0] == 200
    assert metrics(server.url)["Invocations_total"] == before + 3


def test_binary_data_must_add_up(server: BackgroundServer) -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 6], "parameters": {"binary_data_size": 48}}]}
    ).encode()
    url = f"{server.url}/v2/models/{LGB}/infer"
    length = {"Inference-Header-Content-Length": str(len(header))}
    status, doc = call(url, "POST", header + b"\x00" * 40, length)
    assert status == 400
    assert "binary_data_size 48 runs past the body" in doc["error"]
    status, doc = call(url, "POST", header + b"\x00" * 56, length)
    assert status == 400
    assert "8 bytes of binary data no input claims" in doc["error"]


def test_tensor_coding_round_trips() -> None:
    header = {"inputs": [{"name": "h", "datatype": "FP16", "shape": [2], "parameters": {"binary_data_size": 4}}]}
    half = np.array([1.5, -2.0], dtype="<f2")
    doc, binary = tensors.split(json.dumps(header).encode() + half.tobytes(), str(len(json.dumps(header))))
    assert tensors.parse_inputs(doc, binary)["h"].tolist() == [1.5, -2.0]
    words = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 9) + b"xy"
    bytes_header = {
        "inputs": [{"name": "w", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 13}}]
    }
    doc, binary = tensors.split(json.dumps(bytes_header).encode() + words, str(len(json.dumps(bytes_header))))
    with pytest.raises(ValidationError, match="Input 'w': BYTES element at offset 7 runs past the data"):
        tensors.parse_inputs(doc, binary)
    body, headers = tensors.encode_response({"model_name": "m"}, {"empty": np.zeros(0)}, {"empty": True}, False)
    assert headers == {"Inference-Header-Content-Length": str(len(body))}  # binary asked: the header says so
    assert json.loads(body)["outputs"] == [
        {"name": "empty", "datatype": "FP64", "shape": [0], "parameters": {"binary_data_size": 0}}
    ]

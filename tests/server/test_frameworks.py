"""Every framework on one endpoint, through boto3 and through a V2 client no one here wrote."""

from __future__ import annotations

import json
import pickle
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from botocore.exceptions import ClientError

from modelyard.demo import make_artifact
from modelyard.server.run import BackgroundServer
from tests.conftest import runtime_client
from tests.fixtures import (
    booster_bytes,
    csv_body,
    inference_artifact,
    inference_weights,
    joblib_bytes,
    lightgbm_predict,
    lightgbm_text,
    onnx_bytes,
    onnx_predict,
    sample_rows,
    sklearn_model,
    xgb_artifact,
    xgb_predict,
)
from tests.server.helpers import metrics

ROWS = sample_rows()
FRAMEWORKS = ("xgboost", "lightgbm", "sklearn", "onnx", "python")


def target(framework: str, seed: int = 0) -> str:
    names = {
        "xgboost": "xgb-{}.tar.gz",
        "lightgbm": "lgb-{}.tar.gz",
        "sklearn": "forest-{}.joblib",
        "onnx": "linear-{}.onnx",
        "python": "custom-{}.tar.gz",
    }
    return "houses/" + names[framework].format(seed)


def artifact(framework: str, seed: int) -> bytes:
    if framework == "xgboost":
        return xgb_artifact(seed)
    if framework == "lightgbm":
        return make_artifact({"model.txt": lightgbm_text(seed)})
    if framework == "sklearn":
        return joblib_bytes(sklearn_model(seed))
    if framework == "onnx":
        return onnx_bytes(seed)
    return inference_artifact(seed)


def expected(framework: str, seed: int = 0) -> list[float]:
    """What each framework predicts in-process for ROWS (as the server decodes them)."""
    if framework == "xgboost":
        predictions = xgb_predict(booster_bytes(seed), ROWS.astype(np.float32))
    elif framework == "lightgbm":
        predictions = lightgbm_predict(lightgbm_text(seed), ROWS)
    elif framework == "sklearn":
        predictions = sklearn_model(seed).predict(ROWS)
    elif framework == "onnx":
        predictions = onnx_predict(onnx_bytes(seed), {"X": ROWS.astype(np.float32)}).reshape(-1)
    else:
        predictions = ROWS @ inference_weights(seed)
    return [float(v) for v in predictions]


def answered(framework: str, body: bytes) -> list[float]:
    """The predictions in a response body, at the precision the framework computes them."""
    if framework == "python":  # its output_fn answers {"prices": [...]}
        return [float(v) for v in json.loads(body)["prices"]]
    values = [float(v) for v in body.splitlines()]
    if framework in ("xgboost", "onnx"):  # float32, printed at float32's shortest precision
        return [float(v) for v in np.array(values, dtype=np.float32)]
    return values


@pytest.fixture
def store(store_dir: Path) -> Path:
    (store_dir / "houses").mkdir()
    for framework in FRAMEWORKS:
        for seed in range(3):
            (store_dir / target(framework, seed)).write_bytes(artifact(framework, seed))
    (store_dir / "labels.pkl").write_bytes(pickle.dumps(sklearn_model(0, "classifier")))
    return store_dir


def invoke(client: Any, name: str, **extra: Any) -> Any:
    return client.invoke_endpoint(
        EndpointName="modelyard", TargetModel=name, ContentType="text/csv", Body=csv_body(ROWS), **extra
    )


def v2_infer(client: Any, name: str) -> np.ndarray:
    tensor = triton.InferInput("rows", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer(name, [tensor], outputs=[triton.InferRequestedOutput("predict")])
    return np.asarray(result.as_numpy("predict"))


def test_every_framework_through_boto3_and_v2(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, trust_store=True)
    runtime = runtime_client(server.url)
    v2 = triton.InferenceServerClient(server.url.removeprefix("http://"))
    for framework in FRAMEWORKS:
        body = invoke(runtime, target(framework))["Body"].read()
        assert answered(framework, body) == expected(framework), framework
    for framework in ("xgboost", "lightgbm", "sklearn", "python"):
        assert v2_infer(v2, target(framework, 1)).tolist() == expected(framework, 1), framework
    onnx = v2.infer(target("onnx", 1), [_fp64("X")])  # a model's own input name; all outputs
    assert onnx.as_numpy("variable").reshape(-1).tolist() == expected("onnx", 1)
    assert v2.is_model_ready(target("onnx", 1))


def _fp64(name: str) -> Any:
    tensor = triton.InferInput(name, list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=False)
    return tensor


def test_probabilities_through_custom_attributes(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, trust_store=True)
    runtime = runtime_client(server.url)
    pipeline = sklearn_model(0, "classifier")
    labels = invoke(runtime, "labels.pkl")["Body"].read().decode().splitlines()
    assert labels == pipeline.predict(ROWS).tolist()
    response = invoke(runtime, "labels.pkl", CustomAttributes="output=predict_proba", Accept="application/json")
    scores = [p["score"] for p in json.loads(response["Body"].read())["predictions"]]
    assert scores == pipeline.predict_proba(ROWS).tolist()


def test_untrusted_store_serves_only_native_formats(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store)
    runtime = runtime_client(server.url)
    for framework in ("sklearn", "python"):
        with pytest.raises(ClientError) as caught:
            invoke(runtime, target(framework))
        error: Any = caught.value.response
        assert error["Error"]["Code"] == "ValidationError"
        assert "trusted store" in error["Error"]["Message"]
        assert "--trust-store" in error["Error"]["Message"]
    for framework in ("xgboost", "lightgbm", "onnx"):
        assert answered(framework, invoke(runtime, target(framework))["Body"].read()) == expected(framework)


BROKEN_PREDICT = b"""
def model_fn(model_dir):
    return "a model"

def predict_fn(data, model):
    raise ValueError("this house has no price")
"""


def test_inference_py_errors_are_model_errors(serve: Callable[..., BackgroundServer], store: Path) -> None:
    (store / "raises.tar.gz").write_bytes(make_artifact({"code/inference.py": BROKEN_PREDICT}))
    (store / "syntax.tar.gz").write_bytes(make_artifact({"code/inference.py": b"def model_fn(model_dir:\n"}))
    server = serve(store, trust_store=True)
    runtime = runtime_client(server.url)
    with pytest.raises(ClientError) as caught:
        invoke(runtime, "raises.tar.gz")
    error: Any = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "predict_fn raised ValueError: this house has no price" in error["Error"]["Message"]
    assert error["OriginalStatusCode"] == 500
    for _ in range(2):  # a failed load leaves nothing behind: the next request tries again
        with pytest.raises(ClientError) as caught:
            invoke(runtime, "syntax.tar.gz")
        error = caught.value.response
        assert error["Error"]["Code"] == "ModelError"
        assert "inference.py has a syntax error at line 1" in error["Error"]["Message"]
        assert answered("python", invoke(runtime, target("python"))["Body"].read()) == expected("python")
    assert metrics(server.url)["Invocation5XXErrors_total"] == 0


def _cache(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/cache", timeout=10) as response:
        doc: dict[str, Any] = json.loads(response.read())
    return doc


def test_one_budget_for_all_frameworks_evicts_across_them(serve: Callable[..., BackgroundServer], store: Path) -> None:
    names = [(f, target(f, seed)) for seed in range(3) for f in FRAMEWORKS]
    sizing = serve(store, trust_store=True)
    sizing_client = runtime_client(sizing.url)
    for _, name in names:
        invoke(sizing_client, name)
    sizes = {m["target"]: m["memoryBytes"] for m in _cache(sizing.url)["models"]}
    assert len(sizes) == len(names)
    assert all(size > 0 for size in sizes.values())
    budget = int(sum(sizes.values()) * 0.4)  # room for about 40% of the models at once

    # LRU, so that cycling through every model pushes each one out in turn (GDSF would rightly
    # keep the smallest models, the inference.py ones, resident throughout).
    server = serve(store, trust_store=True, memory=budget, eviction="lru")
    runtime = runtime_client(server.url)
    v2 = triton.InferenceServerClient(server.url.removeprefix("http://"))
    ever: set[str] = set()
    evicted: set[str] = set()
    for round_number in range(3):
        for framework, name in names:
            seed = int(name.rsplit("-", 1)[1].split(".")[0])
            if round_number == 1 and framework != "onnx":
                assert v2_infer(v2, name).tolist() == expected(framework, seed)
            else:
                assert answered(framework, invoke(runtime, name)["Body"].read()) == expected(framework, seed)
            cache = _cache(server.url)
            assert cache["memoryUsedBytes"] <= budget
            resident = {m["target"] for m in cache["models"]}
            evicted |= ever - resident
            ever |= resident
    assert {framework for framework, name in names if name in evicted} == set(FRAMEWORKS)
    after = metrics(server.url)
    assert after["ModelEvictions_total[capacity]"] >= len(evicted)
    assert after["Invocation4XXErrors_total"] == after["Invocation5XXErrors_total"] == 0

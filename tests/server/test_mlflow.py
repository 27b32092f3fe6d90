"""An MLflow model served unchanged: a saved folder and its model.tar.gz, through boto3 and tritonclient."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from botocore.exceptions import ClientError

from modelyard.server.run import BackgroundServer
from tests.conftest import runtime_client
from tests.fixtures import house_frame, quietly_import_mlflow, save_mlflow_model

FOLDER = "houses/mlflow-model/"  # a folder artifact (trailing slash), as mlflow.sklearn.save_model wrote it
ARCHIVE = "houses/mlflow-model.tar.gz"  # the same folder, archived


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("mlflow") / "mlflow-model"
    return folder, save_mlflow_model(folder, seed=1)


@pytest.fixture
def store(store_dir: Path, saved: tuple[Path, Any]) -> Path:
    import shutil

    shutil.copytree(saved[0], store_dir / FOLDER)
    with tarfile.open(store_dir / ARCHIVE, "w:gz") as archive:
        archive.add(saved[0], arcname="mlflow-model")
    return store_dir


def mlflow_predict(saved: tuple[Path, Any], frame: Any) -> list[float]:
    """What MLflow itself predicts, through pyfunc, with the saved model."""
    mlflow = quietly_import_mlflow()
    return [float(v) for v in mlflow.pyfunc.load_model(str(saved[0])).predict(frame)]


def invoke(client: Any, target: str, body: bytes, content_type: str, accept: str | None = None) -> Any:
    extra = {"Accept": accept} if accept else {}
    response = client.invoke_endpoint(
        EndpointName="modelyard", TargetModel=target, ContentType=content_type, Body=body, **extra
    )
    return response["Body"].read(), response["ContentType"]


def test_mlflow_model_through_boto3_and_v2(
    serve: Callable[..., BackgroundServer], store: Path, saved: tuple[Path, Any]
) -> None:
    server = serve(store, trust_store=True)
    runtime = runtime_client(server.url)
    frame = house_frame(5, seed=11)
    wanted = mlflow_predict(saved, frame)
    assert wanted == [float(v) for v in saved[1].predict(frame)]

    for target in (FOLDER, ARCHIVE):
        csv_rows = frame.to_csv(index=False, header=False).encode()
        body, media = invoke(runtime, target, csv_rows, "text/csv", "text/csv")
        assert (media, [float(v) for v in body.splitlines()]) == ("text/csv", wanted), target
        with_header = frame.to_csv(index=False).encode()
        body, media = invoke(runtime, target, with_header, "text/csv")
        assert (media, json.loads(body)) == ("application/json", {"predictions": wanted}), target
        split = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        body, media = invoke(runtime, target, json.dumps(split).encode(), "application/json", "application/json")
        assert json.loads(body) == {"predictions": wanted}, target

    v2 = triton.InferenceServerClient(server.url.removeprefix("http://"))
    meta = v2.get_model_metadata(ARCHIVE)
    assert meta["platform"] == "mlflow"
    assert meta["inputs"] == [
        {"name": "year", "datatype": "FP64", "shape": [-1]},
        {"name": "sqft", "datatype": "FP64", "shape": [-1]},
        {"name": "beds", "datatype": "INT64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    tensors = []
    for spec in meta["inputs"]:
        values = frame[spec["name"]].to_numpy()
        if spec["datatype"] == "BYTES":
            values = np.array([v.encode() for v in values], dtype=np.object_)
        tensor = triton.InferInput(spec["name"], [len(frame)], spec["datatype"])
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    result = v2.infer(ARCHIVE, tensors, outputs=[triton.InferRequestedOutput("predict")])
    assert result.as_numpy("predict").tolist() == wanted


def test_bad_rows_are_a_model_error_and_the_model_keeps_serving(
    serve: Callable[..., BackgroundServer], store: Path, saved: tuple[Path, Any]
) -> None:
    runtime = runtime_client(serve(store, trust_store=True).url)
    with pytest.raises(ClientError) as caught:
        invoke(runtime, FOLDER, b"1990,1500,two,Austin", "text/csv")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "Row 1, column 'beds': 'two' is not a whole number" in error["Error"]["Message"]
    frame = house_frame(1, seed=12)
    body, _ = invoke(runtime, FOLDER, frame.to_csv(index=False, header=False).encode(), "text/csv", "text/csv")
    assert [float(body)] == mlflow_predict(saved, frame)


def test_untrusted_store_is_a_clear_400_naming_trust_store(serve: Callable[..., BackgroundServer], store: Path) -> None:
    runtime = runtime_client(serve(store).url)
    for target in (FOLDER, ARCHIVE):
        with pytest.raises(ClientError) as caught:
            invoke(runtime, target, b"1990,1500,2,Austin", "text/csv")
        error = caught.value.response
        assert error["Error"]["Code"] == "ValidationError"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "MLflow model" in error["Error"]["Message"]
        assert "--trust-store" in error["Error"]["Message"]

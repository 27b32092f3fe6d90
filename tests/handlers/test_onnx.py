from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers import Loader
from modelyard.handlers.onnx import ONNXModel
from tests.fixtures import csv_body, onnx_bytes, onnx_graph, onnx_predict, sample_rows

ROWS = sample_rows()
ROWS32 = ROWS.astype(np.float32)


def load(root: Path, data: bytes, name: str = "model.onnx") -> ONNXModel:
    (root / name).write_bytes(data)
    model = Loader(trusted=False).load(root)  # a graph runs no Python: no trust needed
    assert isinstance(model, ONNXModel)
    return model


def test_regressor_reads_its_input_from_the_model_and_predicts_like_onnx_runtime(tmp_path: Path) -> None:
    data = onnx_bytes(0)
    model = load(tmp_path, data, "house.onnx")
    assert [(s.name, s.dtype, s.shape) for s in model.signature()[0]] == [("X", np.dtype(np.float32), (-1, 6))]
    assert model.num_features == 6
    expected = onnx_predict(data, {"X": ROWS32}).reshape(-1)
    body = model.invoke(csv_body(ROWS), "text/csv", "text/csv")[0]
    assert np.array([float(v) for v in body.splitlines()], dtype=np.float32).tolist() == expected.tolist()
    buffer = io.BytesIO()
    np.save(buffer, ROWS32)
    npy = model.invoke(buffer.getvalue(), "application/x-npy", "application/x-npy")[0]
    np.testing.assert_array_equal(np.load(io.BytesIO(npy)), expected)


def test_classifier_zipmap_probabilities_as_columns(tmp_path: Path) -> None:
    data = onnx_bytes(0, "classifier")
    model = load(tmp_path, data)
    assert model.outputs == ("output_label", "output_probability")
    labels = model.invoke(csv_body(ROWS), "text/csv", "text/csv")[0]
    assert [int(v) for v in labels.splitlines()] == onnx_predict(data, {"X": ROWS32}).tolist()
    zipmap = onnx_predict(data, {"X": ROWS32}, "output_probability")
    body = model.invoke(csv_body(ROWS), "text/csv", "application/json", "output=output_probability")[0]
    scores = [p["score"] for p in json.loads(body)["predictions"]]
    assert scores == [[float(str(np.float32(row[k]))) for k in (0, 1)] for row in zipmap]  # float32, shortest


def test_several_inputs_by_name_in_json_and_tensors(tmp_path: Path) -> None:
    model = load(tmp_path, onnx_graph("two_inputs"))
    a, b = [[1.0, 2.0, 3.0]], [[10.0, 20.0, 30.0]]
    body = json.dumps({"inputs": {"a": a, "b": b}}).encode()
    assert json.loads(model.invoke(body, "application/json", "application/json")[0]) == {
        "predictions": [{"score": [11.0, 22.0, 33.0]}]
    }
    results = model.infer({"b": np.array(b), "a": np.array(a)})
    assert results["product"].tolist() == [[10.0, 40.0, 90.0]]
    assert results["sum"].tolist() == [[11.0, 22.0, 33.0]]
    with pytest.raises(ModelError, match=r"takes several inputs .*a, b"):
        model.invoke(b"1,2,3", "text/csv", "")
    with pytest.raises(ModelError, match="takes inputs a, b; the request has a"):
        model.infer({"a": np.array(a)})
    with pytest.raises(ModelError, match=r"Input 'b' has rows of 2 values, the model expects 3"):
        model.infer({"a": np.array(a), "b": np.array([[1.0, 2.0]])})
    with pytest.raises(ModelError, match="no output 'ratio'"):
        model.infer({"a": np.array(a), "b": np.array(b)}, ["ratio"])


def test_string_tensors(tmp_path: Path) -> None:
    model = load(tmp_path, onnx_graph("text"))
    assert model.infer({"text": np.array([b"hello", b"world"], dtype=object)})["same"].tolist() == ["hello", "world"]


def test_wrong_width_names_the_input(tmp_path: Path) -> None:
    model = load(tmp_path, onnx_bytes(0))
    with pytest.raises(ModelError, match="expects 6 features"):
        model.invoke(b"1,2,3", "text/csv", "")
    with pytest.raises(ModelError, match=r"Input 'X' has shape \[1, 2, 6\], the model expects \[\?, 6\]"):
        model.infer({"X": np.zeros((1, 2, 6))})


def test_sessions_are_small_for_many_models(tmp_path: Path) -> None:
    options = load(tmp_path, onnx_bytes(0)).session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert not options.enable_cpu_mem_arena


def test_invalid_file_is_artifact_invalid(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ArtifactInvalid, match="not a model ONNX Runtime can load"):
        Loader().load(tmp_path)


def test_malformed_json_is_the_callers_error(tmp_path: Path) -> None:
    model = load(tmp_path, onnx_graph("two_inputs"))
    with pytest.raises(ModelError, match="not valid JSON") as caught:
        model.invoke(b'{"inputs": {"a": [[1, 2, 3]]', "application/json", "")
    assert caught.value.original_status == 400

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers import Loader
from modelyard.handlers.sklearn import SklearnModel
from tests.fixtures import csv_body, joblib_bytes, sample_rows, sklearn_model

ROWS = sample_rows()


def write(root: Path, name: str, data: bytes) -> Path:
    (root / name).write_bytes(data)
    return root


class NoPredict:
    """Picklable, but not a model."""


def test_untrusted_store_refuses_pickles_and_says_how(tmp_path: Path) -> None:
    root = write(tmp_path, "model.joblib", joblib_bytes(sklearn_model(0)))
    with pytest.raises(ArtifactInvalid, match=r"runs code when loaded.*trusted store.*--trust-store") as caught:
        Loader().load(root)
    assert caught.value.status == 400


@pytest.mark.parametrize("name", ["model.joblib", "regressor.pkl", "model.pickle"])
def test_regressor_predicts_like_scikit_learn(tmp_path: Path, name: str) -> None:
    estimator = sklearn_model(0)
    parallel = copy.deepcopy(estimator).set_params(n_jobs=3)
    data = joblib_bytes(parallel) if name.endswith("joblib") else pickle.dumps(parallel)
    model = Loader(trusted=True).load(write(tmp_path, name, data))
    assert isinstance(model, SklearnModel)
    assert model.num_features == 6
    assert model.outputs == ("predict",)
    body = model.invoke(csv_body(ROWS), "text/csv", "text/csv")[0]
    assert [float(v) for v in body.splitlines()] == estimator.predict(ROWS).tolist()
    assert model.estimator.n_jobs == 1  # many models share the cores


def test_pipeline_with_string_labels_and_probabilities(tmp_path: Path) -> None:
    pipeline = sklearn_model(0, "classifier")
    model = Loader(trusted=True).load(write(tmp_path, "model.pkl", pickle.dumps(pipeline)))
    assert model.outputs == ("predict", "predict_proba", "predict_log_proba", "decision_function")
    labels = model.invoke(csv_body(ROWS), "text/csv", "text/csv")[0]
    assert labels.decode().splitlines() == pipeline.predict(ROWS).tolist()
    doc = json.loads(model.invoke(csv_body(ROWS), "text/csv", "application/json")[0])
    assert [p["score"] for p in doc["predictions"]] == pipeline.predict(ROWS).tolist()
    expected = pipeline.predict_proba(ROWS).tolist()
    by_header = model.invoke(csv_body(ROWS), "text/csv", "application/json", "output=predict_proba")[0]
    assert [p["score"] for p in json.loads(by_header)["predictions"]] == expected
    body = json.dumps({"instances": ROWS.tolist(), "output": "predict_proba"}).encode()
    by_field = model.invoke(body, "application/json", "application/json")[0]
    assert [p["score"] for p in json.loads(by_field)["predictions"]] == expected
    npy = model.invoke(csv_body(ROWS), "text/csv", "application/x-npy")[0]
    assert npy.startswith(b"\x93NUMPY")


def test_unknown_output_and_bad_rows_are_model_errors(tmp_path: Path) -> None:
    model = Loader(trusted=True).load(write(tmp_path, "model.joblib", joblib_bytes(sklearn_model(0))))
    with pytest.raises(ModelError, match="no output 'predict_proba'; it has predict"):
        model.invoke(csv_body(ROWS), "text/csv", "", "output=predict_proba")
    with pytest.raises(ModelError, match="Row 2, column 3: 'x' is not a number"):
        model.invoke(b"1,2,3,4,5,6\n1,2,x,4,5,6", "text/csv", "")
    with pytest.raises(ModelError, match='Row 1, column 2: "a" is not a number'):
        model.invoke(b'{"instances": [[1, "a", 3, 4, 5, 6]]}', "application/json", "")


def test_object_without_predict_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match="holds a NoPredict, not an estimator with a predict method"):
        Loader(trusted=True).load(write(tmp_path, "model.pkl", pickle.dumps(NoPredict())))


def test_unreadable_pickles_are_artifact_invalid(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match="could not be unpickled"):
        Loader(trusted=True).load(write(tmp_path, "model.joblib", b"\x80\x04garbage"))
    module = __name__.encode()  # same length, so the pickle stays well-formed
    missing = pickle.dumps(NoPredict()).replace(module, b"gone_" + b"x" * (len(module) - 5))
    with pytest.raises(ArtifactInvalid, match="No module named 'gone_xxx"):
        Loader(trusted=True).load(write(tmp_path, "model.joblib", missing))

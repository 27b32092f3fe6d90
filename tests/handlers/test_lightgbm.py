from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers import Loader
from modelyard.handlers.lightgbm import LightGBMModel
from tests.fixtures import csv_body, lightgbm_predict, lightgbm_text, sample_rows

ROWS = sample_rows()


def write(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", ["model.txt", "booster.txt", "nested/model.txt"])
def test_text_models_load_untrusted_and_predict_like_lightgbm(tmp_path: Path, name: str) -> None:
    data = lightgbm_text(0)
    model = Loader(trusted=False).load(write(tmp_path, {name: data}))
    assert isinstance(model, LightGBMModel)
    assert model.num_features == 6
    np.testing.assert_array_equal(model.predict(ROWS), lightgbm_predict(data, ROWS))


def test_csv_in_csv_and_json_out(tmp_path: Path) -> None:
    data = lightgbm_text(1)
    model = Loader().load(write(tmp_path, {"model.txt": data}))
    expected = lightgbm_predict(data, ROWS)
    body, media = model.invoke(csv_body(ROWS), "text/csv", "text/csv")
    assert media == "text/csv"
    assert [float(v) for v in body.splitlines()] == expected.tolist()
    doc = json.loads(model.invoke(csv_body(ROWS), "text/csv", "application/json")[0])
    assert [p["score"] for p in doc["predictions"]] == expected.tolist()


def test_raw_score_output_through_custom_attributes(tmp_path: Path) -> None:
    data = lightgbm_text(0, classes=3)
    model = Loader().load(write(tmp_path, {"model.txt": data}))
    probabilities = model.invoke(csv_body(ROWS), "text/csv", "text/csv")[0]
    assert np.loadtxt(probabilities.decode().splitlines(), delimiter=",").shape == (3, 3)
    raw = model.invoke(csv_body(ROWS), "text/csv", "text/csv", "output=raw_score")[0]
    np.testing.assert_allclose(
        np.loadtxt(raw.decode().splitlines(), delimiter=","), lightgbm_predict(data, ROWS, raw_score=True)
    )
    _, outputs = model.signature()
    assert [o.shape for o in outputs] == [(-1, 3), (-1, 3)]


def test_text_files_that_are_not_lightgbm_are_ignored(tmp_path: Path) -> None:
    root = write(tmp_path, {"README.txt": b"my model", "requirements.txt": b"lightgbm", "model.txt": lightgbm_text(0)})
    assert isinstance(Loader().load(root), LightGBMModel)


def test_several_boosters_need_one_named_model_txt(tmp_path: Path) -> None:
    root = write(tmp_path, {"a.txt": lightgbm_text(0), "b.txt": lightgbm_text(1)})
    with pytest.raises(ArtifactInvalid, match=r"no model file .*a\.txt, b\.txt"):
        Loader().load(root)
    (root / "model.txt").write_bytes(lightgbm_text(2))
    np.testing.assert_array_equal(Loader().load(root).predict(ROWS), lightgbm_predict(lightgbm_text(2), ROWS))


def test_corrupt_booster_is_artifact_invalid(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match="not a valid LightGBM model"):
        Loader().load(write(tmp_path, {"model.txt": b"tree\nversion=v4\nnum_class=banana\n"}))


def test_wrong_feature_count_is_a_model_error(tmp_path: Path) -> None:
    model = Loader().load(write(tmp_path, {"model.txt": lightgbm_text(0)}))
    with pytest.raises(ModelError, match="expects 6 features"):
        model.invoke(b"1,2,3", "text/csv", "")
    with pytest.raises(ModelError, match="no output 'leaf'; it has predict, raw_score"):
        model.invoke(b"1,2,3,4,5,6", "text/csv", "", "output=leaf")

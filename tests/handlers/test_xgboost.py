from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers import Loader
from modelyard.handlers.xgboost import XGBoostModel
from modelyard.sizing import measure
from tests.fixtures import booster_bytes, xgb_predict

ROWS = np.array([[1994, 3188, 5, 1.5, 1.62, 3], [2001, 1500, np.nan, 1, 0.5, 0]], dtype=np.float32)


def write(root: Path, name: str, data: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("name", "fmt"), [("xgboost-model", "ubj"), ("xgboost-model", "json"), ("model.json", "json"), ("m.ubj", "ubj")]
)
def test_formats_load_and_predict_like_xgboost(tmp_path: Path, name: str, fmt: str) -> None:
    data = booster_bytes(0, fmt)
    model = Loader().load(write(tmp_path, name, data))
    assert isinstance(model, XGBoostModel)
    assert model.num_features == 6
    np.testing.assert_array_equal(model.predict(ROWS), xgb_predict(data, ROWS))


def test_fast_path_is_used_and_equals_inplace_predict(tmp_path: Path) -> None:
    model = Loader().load(write(tmp_path, "xgboost-model", booster_bytes(1)))
    assert isinstance(model, XGBoostModel)
    assert model._fast is not None
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 5000, size=(500, 6)).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    np.testing.assert_array_equal(model._fast(rows), model.booster.inplace_predict(rows))


def test_invoke_csv_to_csv(tmp_path: Path) -> None:
    data = booster_bytes(0)
    model = Loader().load(write(tmp_path, "xgboost-model", data))
    body, media = model.invoke(b"1994,3188,5,1.5,1.62,3", "text/csv", "text/csv")
    assert media == "text/csv"
    assert float(body) == pytest.approx(float(xgb_predict(data, ROWS[:1])[0]))


def test_wrong_feature_count_is_a_model_error(tmp_path: Path) -> None:
    model = Loader().load(write(tmp_path, "xgboost-model", booster_bytes(0)))
    with pytest.raises(ModelError, match="expects 6 features"):
        model.invoke(b"1,2,3", "text/csv", "")


def test_pickled_booster_needs_a_trusted_store(tmp_path: Path) -> None:
    booster = xgb.Booster()
    booster.load_model(bytearray(booster_bytes(0)))
    root = write(tmp_path, "xgboost-model", pickle.dumps(booster))
    with pytest.raises(ArtifactInvalid, match="trusted store"):
        Loader().load(root)
    model = Loader(trusted=True).load(root)
    np.testing.assert_array_equal(model.predict(ROWS), booster.inplace_predict(ROWS))


def test_no_model_file_names_what_was_found(tmp_path: Path) -> None:
    root = write(tmp_path, "README.txt", b"hello")
    with pytest.raises(ArtifactInvalid, match=r"no model file .*README\.txt"):
        Loader().load(root)


def test_corrupt_model_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match="not a valid XGBoost model"):
        Loader().load(write(tmp_path, "xgboost-model", b"{not really"))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "it is empty"),
        (b'{"learner": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "it nests deeper than 64 levels"),
        (b"{L" + (7).to_bytes(8, "big") + b"learner" + b"[" * 100_000 + b"]" * 100_000 + b"}", "it nests deeper"),
    ],
    ids=["empty", "deep-json", "deep-ubjson"],
)
def test_model_files_that_crash_xgboost_are_refused_before_it_sees_them(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    # XGBoost aborts the whole process on these (an empty buffer; a stack overflow in its
    # recursive parser): each is loaded in a process of its own, so a regression fails here
    root = write(tmp_path, "xgboost-model", content)
    code = (
        "import sys; from pathlib import Path; from modelyard.errors import ArtifactInvalid; "
        "from modelyard.handlers import Loader\n"
        "try:\n    Loader().load(Path(sys.argv[1]))\nexcept ArtifactInvalid as exc:\n    print(exc.message)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().startswith(f"'xgboost-model' is not a valid XGBoost model: {reason}")


def test_load_errors_name_no_host_path(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid) as caught:
        Loader().load(write(tmp_path, "xgboost-model", b"garbage" * 10))
    assert str(tmp_path) not in caught.value.message
    assert "/workspace/" not in caught.value.message  # XGBoost's own source location


def test_unknown_framework_is_refused() -> None:
    with pytest.raises(Exception, match="Unknown framework"):
        Loader("tensorflow")


def test_measured_size_is_close_to_resident_growth(tmp_path: Path) -> None:
    root = write(tmp_path, "xgboost-model", booster_bytes(2))
    models = []
    total = 0
    for _ in range(50):
        model, size = measure(lambda: Loader().load(root))
        models.append(model)
        total += size
    assert total / 50 > 10_000  # a real model is not measured as nothing
    assert total / 50 < 10 * len(booster_bytes(2))

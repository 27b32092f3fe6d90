from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelyard.errors import ArtifactInvalid
from modelyard.handlers import Loader
from tests.fixtures import INFERENCE_PY, booster_bytes, joblib_bytes, lightgbm_text, onnx_bytes, sklearn_model


def files(root: Path, names: dict[str, bytes]) -> Path:
    for name, data in names.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


ARTIFACTS = {
    "xgboost": {"xgboost-model": booster_bytes(0)},
    "lightgbm": {"model.txt": lightgbm_text(0), "README.txt": b"docs"},
    "sklearn": {"model.joblib": b"\x80"},
    "onnx": {"model.onnx": b"\x08"},
    "python": {"code/inference.py": INFERENCE_PY, "model.joblib": b"\x80", "weights.json": b"{}"},
}


@pytest.mark.parametrize(("framework", "content"), ARTIFACTS.items())
def test_each_framework_is_detected_from_content(tmp_path: Path, framework: str, content: dict[str, bytes]) -> None:
    handler, model_file = Loader().detect(files(tmp_path, content))
    assert handler.name == framework
    assert model_file.name in content or str(model_file.relative_to(tmp_path)) in content


def test_inference_py_outranks_the_files_it_reads(tmp_path: Path) -> None:
    root = files(tmp_path, {"inference.py": INFERENCE_PY, "model.onnx": onnx_bytes(0), "model.txt": lightgbm_text(0)})
    assert Loader().detect(root)[0].name == "python"


def test_two_frameworks_is_a_clear_error(tmp_path: Path) -> None:
    root = files(tmp_path, {"model.joblib": joblib_bytes(sklearn_model(0)), "model.onnx": onnx_bytes(0)})
    with pytest.raises(ArtifactInvalid, match=r"several frameworks: sklearn \(model\.joblib\), onnx \(model\.onnx\)"):
        Loader().detect(root)


def test_forcing_a_framework(tmp_path: Path) -> None:
    root = files(tmp_path, {"code/inference.py": INFERENCE_PY, "model.joblib": joblib_bytes(sklearn_model(0))})
    assert Loader("sklearn").detect(root)[0].name == "sklearn"
    with pytest.raises(ArtifactInvalid, match=r"no model file for onnx \(found: code/inference\.py, model\.joblib\)"):
        Loader("onnx").detect(root)


def test_nothing_matching_names_what_was_found(tmp_path: Path) -> None:
    root = files(tmp_path, {"notes.txt": b"not a booster", "data.csv": b"1,2"})
    with pytest.raises(ArtifactInvalid, match=r"no model file for any framework \(found: data\.csv, notes\.txt\)"):
        Loader().detect(root)


@pytest.mark.parametrize(
    ("framework", "module", "content"),
    [
        ("lightgbm", "lightgbm", {"model.txt": lightgbm_text(0)}),
        ("onnx", "onnxruntime", {"model.onnx": onnx_bytes(0)}),
        ("sklearn", "sklearn", {"model.joblib": joblib_bytes(sklearn_model(0))}),
    ],
)
def test_missing_framework_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, framework: str, module: str, content: dict[str, bytes]
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail as if not installed
    with pytest.raises(ArtifactInvalid, match=rf"pip install 'modelyard\[{framework}\]'"):
        Loader(trusted=True).load(files(tmp_path, content))

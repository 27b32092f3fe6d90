"""MLflow models: detection, trust, typed payloads from the signature, V2, and code folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.control.deployer import framework_for_image
from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers import HANDLERS, Loader
from modelyard.handlers.mlflow import MLflowModel
from tests.fixtures import (
    INFERENCE_PY,
    house_frame,
    joblib_bytes,
    quietly_import_mlflow,
    save_mlflow_model,
    sklearn_model,
)

MLMODEL = b"flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"


def files(root: Path, names: dict[str, bytes]) -> Path:
    for name, data in names.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# -- detection (no MLflow needed) ---------------------------------------------------


def test_an_mlmodel_folder_outranks_the_pickle_beside_it(tmp_path: Path) -> None:
    root = files(tmp_path, {"MLmodel": MLMODEL, "model.pkl": joblib_bytes(sklearn_model(0)), "conda.yaml": b""})
    handler, model_file = Loader().detect(root)
    assert handler.name == "mlflow"
    assert model_file == root / "MLmodel"


def test_an_mlmodel_in_a_subfolder_of_the_archive(tmp_path: Path) -> None:
    root = files(tmp_path, {"houses/MLmodel": MLMODEL, "houses/model.pkl": b"\x80"})
    assert Loader().detect(root) == (HANDLERS["mlflow"], root / "houses" / "MLmodel")


def test_without_mlmodel_a_pickle_is_scikit_learn(tmp_path: Path) -> None:
    root = files(tmp_path, {"model.pkl": b"\x80", "MLmodel.txt": b"not it", "mlmodel": b"nor this"})
    assert Loader().detect(root)[0].name == "sklearn"


def test_the_shallowest_mlmodel_is_the_model(tmp_path: Path) -> None:
    root = files(tmp_path, {"MLmodel": MLMODEL, "artifacts/inner/MLmodel": MLMODEL})
    assert Loader().detect(root)[1] == root / "MLmodel"
    twins = files(tmp_path / "twins", {"a/MLmodel": MLMODEL, "b/MLmodel": MLMODEL})
    with pytest.raises(ArtifactInvalid, match="no model file for any framework"):
        Loader().detect(twins)


def test_inference_py_outranks_an_mlmodel_unless_it_is_the_models_own_code(tmp_path: Path) -> None:
    sagemaker = files(tmp_path / "sagemaker", {"code/inference.py": INFERENCE_PY, "model/MLmodel": MLMODEL})
    assert Loader().detect(sagemaker)[0].name == "python"
    with_code = MLMODEL + b"    code: code\n"
    own = files(tmp_path / "own", {"MLmodel": with_code, "code/inference.py": b"def helper(): ...\n"})
    assert Loader().detect(own)[0].name == "mlflow"


def test_forcing_mlflow(tmp_path: Path) -> None:
    root = files(tmp_path, {"code/inference.py": INFERENCE_PY, "MLmodel": MLMODEL})
    assert Loader("mlflow").detect(root)[0].name == "mlflow"


def test_control_plane_images_name_mlflow() -> None:
    assert framework_for_image("mlflow") == "mlflow"
    assert framework_for_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:3.1.0") == "mlflow"


# -- trust and installation ---------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """One MLflow model folder for the module (saving one takes a second or two)."""
    folder = tmp_path_factory.mktemp("mlflow") / "houses"
    return folder, save_mlflow_model(folder)


@pytest.fixture
def model(saved: tuple[Path, Any]) -> MLflowModel:
    loaded = Loader(trusted=True).load(saved[0])
    assert isinstance(loaded, MLflowModel)
    return loaded


def test_untrusted_store_refuses_mlflow_models_and_says_how(saved: tuple[Path, Any]) -> None:
    with pytest.raises(ArtifactInvalid, match=r"MLflow model.*runs the model's code.*--trust-store") as caught:
        Loader().load(saved[0])
    assert caught.value.status == 400


def test_missing_mlflow_names_the_pip_command(saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc", None)  # makes the import fail as if not installed
    with pytest.raises(ArtifactInvalid, match=r"pip install 'modelyard\[mlflow\]'"):
        Loader(trusted=True).load(saved[0])


def test_missing_flavour_package_names_the_pip_command(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    quietly_import_mlflow()
    monkeypatch.setitem(sys.modules, "skops", None)  # the sklearn flavour's default format
    with pytest.raises(ArtifactInvalid, match=r"needs the 'skops' package.*: pip install 'modelyard\[mlflow\]'\.$"):
        Loader(trusted=True).load(saved[0])


def test_a_broken_model_is_artifact_invalid(saved: tuple[Path, Any], tmp_path: Path) -> None:
    broken = shutil.copytree(saved[0], tmp_path / "broken")
    (broken / "model.skops").write_bytes(b"not a zip")
    with pytest.raises(ArtifactInvalid, match="MLflow could not load the model"):
        Loader(trusted=True).load(broken)


# -- payloads -----------------------------------------------------------------------


def expected(saved: tuple[Path, Any], frame: Any) -> list[float]:
    return [float(v) for v in saved[1].predict(frame)]


def csv_values(body: bytes) -> list[float]:
    return [float(v) for v in body.splitlines()]


def test_signature_types_the_columns(model: MLflowModel) -> None:
    assert [(c.name, c.type, str(c.dtype)) for c in model.columns or []] == [
        ("year", "double", "float64"),
        ("sqft", "double", "float64"),
        ("beds", "long", "int64"),
        ("city", "string", "object"),
    ]
    assert model.num_features == 4
    assert model.outputs == ("predict",)
    assert model.threaded


def test_csv_with_and_without_a_header(model: MLflowModel, saved: tuple[Path, Any]) -> None:
    frame = house_frame(4, seed=7)
    plain = frame.to_csv(index=False, header=False).encode()
    assert csv_values(model.invoke(plain, "text/csv", "text/csv")[0]) == expected(saved, frame)
    reordered = frame[["city", "beds", "year", "sqft"]].to_csv(index=False).encode()
    assert csv_values(model.invoke(reordered, "text/csv", "text/csv")[0]) == expected(saved, frame)


def test_mlflow_json_formats_answer_like_mlflows_scoring_server(model: MLflowModel, saved: tuple[Path, Any]) -> None:
    frame = house_frame(3, seed=8)
    split = json.loads(frame.to_json(orient="split", index=False))
    bodies = [
        {"dataframe_split": split},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"inputs": frame.to_dict(orient="list")},
        {"instances": frame.to_dict(orient="records")},
        {"instances": frame.to_numpy().tolist()},  # rows by position: SageMaker's shape too
    ]
    for body in bodies:
        answer, media = model.invoke(json.dumps(body).encode(), "application/json", "")
        assert media == "application/json"
        assert json.loads(answer) == {"predictions": expected(saved, frame)}, body


def test_sagemaker_shapes(model: MLflowModel, saved: tuple[Path, Any]) -> None:
    frame = house_frame(2, seed=9)
    rows = frame.to_numpy().tolist()
    for body in (rows, {"features": rows}, [{"features": row} for row in rows], frame.to_dict(orient="records")):
        answer = model.invoke(json.dumps(body).encode(), "application/json", "text/csv")[0]
        assert csv_values(answer) == expected(saved, frame), body
    one = model.invoke(json.dumps(rows[0]).encode(), "application/json", "text/csv")[0]
    assert csv_values(one) == expected(saved, frame.head(1))
    lines = "\n".join(json.dumps(row) for row in rows).encode()
    assert csv_values(model.invoke(lines, "application/jsonlines", "text/csv")[0]) == expected(saved, frame)
    npy = model.invoke(frame.to_csv(index=False, header=False).encode(), "text/csv", "application/x-npy")[0]
    assert npy.startswith(b"\x93NUMPY")


def test_params_reach_the_model(model: MLflowModel, saved: tuple[Path, Any]) -> None:
    frame = house_frame(1, seed=3)
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False)), "params": {"unused": 1}}
    answer = json.loads(model.invoke(json.dumps(body).encode(), "application/json", "application/json")[0])
    assert answer == {"predictions": expected(saved, frame)}  # MLflow ignores params its signature lacks
    with pytest.raises(ModelError, match='"params" must be an object'):
        model.invoke(b'{"inputs": [[1, 2, 3, "Austin"]], "params": [1]}', "application/json", "")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"1990,1500,2.5,Austin", "text/csv", r"Row 1, column 'beds': '2.5' is not a whole number .*long"),
        (b"1990,1500,2,Austin\n1990,big,2,Boston", "text/csv", r"Row 2, column 'sqft': 'big' is not a number"),
        (b"1990,1500,2", "text/csv", r"Row 1 has 3 values; the model's signature has 4: year, sqft, beds, city"),
        (
            b"year,sqft,bedrooms,city\n1990,1500,2,Austin",
            "text/csv",
            r"signature lacks: bedrooms",
        ),
        (b"year,sqft,city\n1990,1500,Austin", "text/csv", r"CSV header lacks the column\(s\) beds"),
        (b'[{"year": 1990, "sqft": 1500, "city": "Austin"}]', "application/json", r"Row 1 lacks the column\(s\) beds"),
        (b"[[1990, 1500, 2, 7]]", "application/json", r"Row 1, column 'city': 7 is not a string"),
        (b'{"dataframe_split": {"columns": ["year"], "data": [[1]]}}', "application/json", r"MLflow refused the input"),
        (b'{"inputs": 1, "instances": 2}', "application/json", r"give one of them"),
        (b"{not json", "application/json", r"not valid JSON"),
    ],
)
def test_bad_input_is_a_model_error_naming_the_value(
    model: MLflowModel, body: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        model.invoke(body, content_type, "")
    assert caught.value.status == 424


# -- Open Inference Protocol ----------------------------------------------------------


def test_v2_signature_and_tensors(model: MLflowModel, saved: tuple[Path, Any]) -> None:
    inputs, outputs = model.signature()
    assert [(s.name, s.dtype.kind, s.shape) for s in inputs] == [
        ("year", "f", (-1,)),
        ("sqft", "f", (-1,)),
        ("beds", "i", (-1,)),
        ("city", "O", (-1,)),
    ]
    assert [(s.name, str(s.dtype), s.shape) for s in outputs] == [("predict", "float64", (-1,))]
    frame = house_frame(3, seed=4)
    named = {
        "year": frame["year"].to_numpy(),
        "sqft": frame["sqft"].to_numpy(),
        "beds": frame["beds"].to_numpy().astype(np.int32),
        "city": np.array([c.encode() for c in frame["city"]], dtype=object),  # BYTES arrive as bytes
    }
    assert model.infer(named)["predict"].tolist() == expected(saved, frame)
    rows = np.array(frame.to_numpy().tolist(), dtype=object)  # one tensor of rows, by position
    assert model.infer({"rows": rows})["predict"].tolist() == expected(saved, frame)
    with pytest.raises(
        ModelError, match=r"Input 'beds': 2.5 is not a whole number \(the signature makes column 'beds' long"
    ):
        model.infer({**named, "beds": np.array([2.5, 1.0, 1.0])})
    with pytest.raises(ModelError, match="no output 'proba'"):
        model.infer(named, ["proba"])


# -- code folders ---------------------------------------------------------------------


class Doubler:
    """A pyfunc model whose predict imports a helper module from the model's code folder."""

    def predict(self, context: Any, model_input: list[float], params: dict[str, Any] | None = None) -> list[float]:
        import mlflow_test_helper  # type: ignore[import-not-found]

        return [float(mlflow_test_helper.FACTOR * v) for v in model_input]


def save_code_model(path: Path, helper_dir: Path, factor: int) -> None:
    import warnings

    mlflow = quietly_import_mlflow()
    helper_dir.mkdir(parents=True, exist_ok=True)
    (helper_dir / "mlflow_test_helper.py").write_text(f"FACTOR = {factor}\n")
    python_model = type("DoublerModel", (mlflow.pyfunc.PythonModel,), {"predict": Doubler.predict})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(
            str(path),
            python_model=python_model(),
            code_paths=[str(helper_dir / "mlflow_test_helper.py")],
            pip_requirements=["mlflow"],
        )


def test_unload_forgets_the_models_code_so_a_new_version_runs_its_own(tmp_path: Path) -> None:
    save_code_model(tmp_path / "v1", tmp_path / "src1", factor=2)
    save_code_model(tmp_path / "v2", tmp_path / "src2", factor=3)
    loader = Loader(trusted=True)
    first = loader.load(tmp_path / "v1")
    assert json.loads(first.invoke(b"[1.5, 2]", "application/json", "")[0]) == {"predictions": [3.0, 4.0]}
    assert any(p.startswith(str(tmp_path / "v1")) for p in sys.path)
    first.unload()
    assert not any(p.startswith(str(tmp_path / "v1")) for p in sys.path)
    assert "mlflow_test_helper" not in sys.modules
    second = loader.load(tmp_path / "v2")
    assert json.loads(second.invoke(b"[1.5, 2]", "application/json", "")[0]) == {"predictions": [4.5, 6.0]}
    second.unload()


# -- imports ----------------------------------------------------------------------------


def test_mlflow_is_imported_by_the_first_mlflow_model_only() -> None:
    """In a fresh interpreter: importing modelyard imports neither MLflow nor pandas, and an
    endpoint's start-up leaves MLflow (seconds, tens of MiB) to the first MLflow model unless forced."""
    code = (
        "import sys, modelyard, modelyard.server.app, modelyard.handlers\n"
        "from modelyard.handlers import Loader\n"
        "print(sorted(m for m in ('mlflow', 'pandas') if m in sys.modules))\n"
        "Loader().import_frameworks()\n"
        "print('mlflow' in sys.modules)\n"
        "print(Loader('mlflow').import_frameworks())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.splitlines() == ["[]", "False", "['mlflow.pyfunc']"], out.stderr


def test_requirement_mismatches_are_logged_once_per_requirements_list(saved: tuple[Path, Any], tmp_path: Path) -> None:
    """MLflow checks the model's requirements on every load; a thousand models saved alike warn once."""
    import logging

    copies = [shutil.copytree(saved[0], tmp_path / f"model-{i}") for i in range(3)]
    for copy in copies:
        (copy / "requirements.txt").write_text("scikit-learn==0.0.1\nskops\n")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collect = Collect()
    mlflow_log = logging.getLogger("mlflow")
    mlflow_log.addHandler(collect)
    try:
        loader = Loader(trusted=True)
        for copy in copies:
            loader.load(copy).unload()
    finally:
        mlflow_log.removeHandler(collect)
    mismatches = [r for r in records if "scikit-learn==0.0.1" in r.getMessage()]
    assert len(mismatches) == 1, [r.getMessage() for r in records]

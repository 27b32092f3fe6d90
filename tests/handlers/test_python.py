from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ArtifactInvalid, ModelError, UnsupportedContentType
from modelyard.handlers import Loader
from modelyard.handlers.python import PythonModel
from tests.fixtures import csv_body, inference_artifact, inference_weights, sample_rows

ROWS = sample_rows()


def unpack(root: Path, artifact: bytes) -> Path:
    with tarfile.open(fileobj=io.BytesIO(artifact)) as archive:
        archive.extractall(root, filter="data")
    return root


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def load(root: Path) -> PythonModel:
    model = Loader(trusted=True).load(root)
    assert isinstance(model, PythonModel)
    return model


def test_untrusted_store_refuses_inference_py(tmp_path: Path) -> None:
    with pytest.raises(ArtifactInvalid, match=r"code/inference\.py.*trusted store.*--trust-store"):
        Loader().load(unpack(tmp_path, inference_artifact()))


def test_all_four_functions(tmp_path: Path) -> None:
    model = load(unpack(tmp_path, inference_artifact(3)))
    body, media = model.invoke(csv_body(ROWS), "text/csv", "application/json")
    assert media == "application/json"
    assert json.loads(body) == {"prices": (ROWS @ inference_weights(3)).tolist()}
    assert model.threaded  # user code never runs on the event loop
    assert model.infer({"x": ROWS})["predict"].tolist() == (ROWS @ inference_weights(3)).tolist()


def test_user_errors_are_model_errors_with_their_message(tmp_path: Path) -> None:
    model = load(unpack(tmp_path, inference_artifact()))
    with pytest.raises(ModelError, match="predict_fn raised ValueError: expected 6 features, got 2") as caught:
        model.invoke(b"1,2", "text/csv", "application/json")
    assert caught.value.status == 424
    assert caught.value.original_status == 500
    with pytest.raises(ModelError, match="input_fn raised ValueError: unsupported content type image/png"):
        model.invoke(b"...", "image/png", "application/json")


def test_defaults_decode_rows_and_call_model_predict(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "inference.py": (
                "import numpy as np\n"
                "class Doubler:\n"
                "    def predict(self, rows):\n"
                "        return rows.sum(axis=1) * 2\n"
                "def model_fn(model_dir, context):\n"  # the toolkit's optional context gets None
                "    assert context is None\n"
                "    return Doubler()\n"
            )
        },
    )
    model = load(root)
    body, media = model.invoke(b"1,2,3\n4,5,6", "text/csv", "")
    assert (json.loads(body), media) == ({"predictions": [{"score": 12.0}, {"score": 30.0}]}, "application/json")
    assert model.invoke(b"1,2,3", "text/csv", "text/csv")[0] == b"12.0"
    with pytest.raises(UnsupportedContentType):
        model.invoke(b"1,2,3", "image/png", "")


def test_transform_fn_alone_and_through_tensors(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "code/inference.py": (
                "import io\n"
                "import numpy as np\n"
                "from helper_for_modelyard_test import scale\n"  # a module beside inference.py
                "def model_fn(model_dir):\n"
                "    return scale\n"
                "def transform_fn(model, body, content_type, accept):\n"
                "    if content_type == 'application/x-npy':\n"
                "        out = io.BytesIO()\n"
                "        np.save(out, np.load(io.BytesIO(body)) * model)\n"
                "        return out.getvalue(), 'application/x-npy'\n"
                "    return b'scaled:' + body, 'text/plain'\n"
            ),
            "code/helper_for_modelyard_test.py": "scale = 10\n",
        },
    )
    model = load(root)
    assert model.invoke(b"abc", "text/plain", "text/plain") == (b"scaled:abc", "text/plain")
    assert model.infer({"x": np.array([[1.0, 2.0]])})["predict"].tolist() == [[10.0, 20.0]]
    assert str(root / "code") not in sys.path


def test_user_status_code_is_kept(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "inference.py": (
                "class Refused(Exception):\n"
                "    status_code = 415\n"
                "def model_fn(model_dir):\n"
                "    return None\n"
                "def predict_fn(data, model):\n"
                "    raise Refused('no such rows here')\n"
            )
        },
    )
    with pytest.raises(ModelError, match="predict_fn raised Refused: no such rows here") as caught:
        load(root).invoke(b"1,2", "text/csv", "")
    assert caught.value.original_status == 415


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("def model_fn(model_dir)\n    return 1\n", ModelError, r"syntax error at line 1: expected ':'"),
        ("import no_such_module_for_modelyard\n", ModelError, "importing inference.py raised ModuleNotFoundError"),
        ("def model_fn(model_dir):\n    raise OSError('weights missing')\n", ModelError, "model_fn raised OSError"),
        ("def predict_fn(data, model):\n    return data\n", ArtifactInvalid, "defines no model_fn"),
        ("def model_fn(d):\n    return 1\n", ArtifactInvalid, "neither predict_fn nor transform_fn.*int"),
        (
            "def model_fn(d):\n    return 1\ndef transform_fn(m, b, c, a):\n    return b\n"
            "def predict_fn(d, m):\n    return d\n",
            ArtifactInvalid,
            "transform_fn together with",
        ),
    ],
)
def test_broken_scripts_fail_at_load(tmp_path: Path, source: str, error: type[Exception], message: str) -> None:
    before = set(sys.modules)
    with pytest.raises(error, match=message):
        Loader(trusted=True).load(write(tmp_path, {"code/inference.py": source}))
    assert not {m for m in set(sys.modules) - before if m.startswith("_modelyard_inference")}


def test_unload_forgets_the_module(tmp_path: Path) -> None:
    model = load(unpack(tmp_path, inference_artifact()))
    name = model.module.__name__
    assert name in sys.modules
    model.unload()
    assert name not in sys.modules

"""ONNX models load from their folder: external data only from inside it, and no run that never ends."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ArtifactInvalid
from modelyard.handlers import Loader
from modelyard.handlers.onnx import ONNXModel
from modelyard.handlers.onnx_checks import check_external_data
from modelyard.handlers.structure import StructureError
from tests.fixtures import onnx_bytes
from tests.handlers.hostile import onnx_endless_loop, onnx_external, onnx_nested

SECRET = b"access_key = 'AKIA-not-for-models'"


def artifact(root: Path, model: bytes, **files: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.onnx").write_bytes(model)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def test_external_data_next_to_the_model_is_read(tmp_path: Path) -> None:
    # loaded from bytes, ONNX Runtime looked for weights.bin in the working directory
    root = artifact(tmp_path / "artifact", onnx_external("weights.bin", 5), **{"weights.bin": b"\x01\x02\x03\x04\x05"})
    model = Loader().load(root)
    assert model.predict(np.zeros((1, 1), dtype=np.float32)).tolist() == [1, 2, 3, 4, 5]


def test_external_data_is_never_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "modelyard.toml").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path / "cwd")
    root = artifact(tmp_path / "artifact", onnx_external("modelyard.toml", len(SECRET)))
    with pytest.raises(ArtifactInvalid, match=r"'modelyard.toml' is not a file inside the artifact's folder"):
        Loader().load(root)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("/etc/passwd", "not a path inside"),
        ("../outside.bin", "not a path inside"),
        ("sub/../../outside.bin", "not a path inside"),
        ("link.bin", "not a file inside"),
        ("missing.bin", "not a file inside"),
        ("", "not a path inside"),
    ],
)
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str, message: str) -> None:
    (tmp_path / "outside.bin").write_bytes(SECRET)
    root = artifact(tmp_path / "artifact", onnx_external(location, 4))
    (root / "sub").mkdir()
    os.symlink(tmp_path / "outside.bin", root / "link.bin")
    with pytest.raises(StructureError, match=message):
        check_external_data((root / "model.onnx").read_bytes(), root)


def test_external_data_shorter_than_its_claim_is_refused(tmp_path: Path) -> None:
    root = artifact(tmp_path, onnx_external("weights.bin", 8, offset=1 << 40), **{"weights.bin": b"12345678"})
    with pytest.raises(StructureError, match="shorter than offset 1099511627776 \\+ length 8"):
        check_external_data((root / "model.onnx").read_bytes(), root)


def test_real_models_pass(tmp_path: Path) -> None:
    for kind in ("regressor", "classifier"):
        check_external_data(onnx_bytes(0, kind), tmp_path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (onnx_nested(40), "nest deeper than 100 levels"),
        (b"\x3a\xff\xff\xff\xff\x0f", "claims more bytes"),
        (b"\x0b\x00", "wire type 3"),
        (b"\x08\xff\xff", "runs past its message"),
    ],
)
def test_malformed_or_deep_protobuf_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(StructureError, match=message):
        check_external_data(data, tmp_path)


def test_a_first_run_that_never_ends_is_stopped_and_refused(tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_endless_loop(), providers=["CPUExecutionProvider"])
    with pytest.raises(ArtifactInvalid, match=r"took more than 0\.2 s"):
        ONNXModel(session).warm_up(limit=0.2)

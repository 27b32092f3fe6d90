"""Payload handling every handler shares (modelyard.codecs): dtypes, labels, options, row errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from modelyard import codecs
from modelyard.errors import ModelError


def test_rows_decode_to_the_models_dtype() -> None:
    rows = codecs.decode(b"1.62,3\n0.1,2", "text/csv", 2, np.float64)
    assert rows.dtype == np.float64
    assert rows[0, 0] == 1.62  # not float32's 1.6200000047683716
    assert codecs.decode(b"0 0:1.62", "text/libsvm", None, np.float64)[0, 0] == 1.62
    assert codecs.decode(b"[[1.62, 3]]", "application/json", 2, np.float64).dtype == np.float64


def test_json_errors_name_row_and_column() -> None:
    with pytest.raises(ModelError, match=r'Row 2, column 3: "x" is not a number'):
        codecs.decode(b'{"instances": [[1, 2, 3], [1, 2, "x"]]}', "application/json")
    with pytest.raises(ModelError, match=r"Row 1, column 2: \[2\] is not a number"):
        codecs.decode(b'[["1.5", [2]]]', "application/json")


def test_jsonlines_one_row_per_line() -> None:
    body = b'[1, 2]\n{"features": [3, 4]}\n'
    assert codecs.decode(body, "application/jsonlines").tolist() == [[1, 2], [3, 4]]
    with pytest.raises(ModelError, match="Line 2 is not valid JSON"):
        codecs.decode(b"[1, 2]\n[3,\n", "application/jsonlines")


def test_npy_keeps_rows_checked() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 3, 4)))
    with pytest.raises(ModelError, match="must have 1 or 2 dimensions"):
        codecs.decode(buffer.getvalue(), "application/x-npy")
    assert codecs.load_npy(buffer.getvalue()).shape == (2, 3, 4)


def test_as_rows() -> None:
    assert codecs.as_rows(np.arange(3), 3).shape == (1, 3)
    with pytest.raises(ModelError, match="Input 'x' has rows of 2 values, the model expects 3"):
        codecs.as_rows(np.zeros((1, 2)), 3, np.float32, "Input 'x'")
    with pytest.raises(ModelError, match="values of type <U1, not numbers"):
        codecs.as_rows(np.array([["a", "b"]]), None)
    with pytest.raises(ModelError, match="has no rows"):
        codecs.as_rows(np.zeros((0, 3)), 3)


def test_labels_and_integers_are_encoded_as_they_are() -> None:
    labels = np.array(["cheap", 'de,ar "x"'], dtype=object)
    assert codecs.encode(labels, "text/csv")[0] == b'cheap\n"de,ar ""x"""'
    assert json.loads(codecs.encode(labels, "application/json")[0]) == {
        "predictions": [{"score": "cheap"}, {"score": 'de,ar "x"'}]
    }
    npy = codecs.encode(labels, "application/x-npy")[0]
    assert np.load(io.BytesIO(npy)).tolist() == ["cheap", 'de,ar "x"']
    assert codecs.encode(np.array([0, 1], dtype=np.int64), "text/csv")[0] == b"0\n1"
    assert json.loads(codecs.encode(np.array([1, 2]), "application/json")[0])["predictions"][1] == {"score": 2}
    assert codecs.encode(np.float64(0.5), "text/csv")[0] == b"0.5"  # a scalar is one prediction
    with pytest.raises(ModelError, match=r"cannot be written as \.npy"):
        codecs.encode(np.array([{"a": 1}], dtype=object), "application/x-npy")


@pytest.mark.parametrize(
    ("body", "content_type", "attributes", "expected"),
    [
        (b"1,2", "text/csv", None, {}),
        (b"1,2", "text/csv", "output=predict_proba", {"output": "predict_proba"}),
        (b"1,2", "text/csv", "trace=1; Output = raw_score ,x", {"trace": "1", "output": "raw_score"}),
        (b'{"instances": [[1]], "output": "predict_proba"}', "application/json", None, {"output": "predict_proba"}),
        (b'{"instances": [[1]], "output": "a"}', "application/json; charset=utf-8", "output=b", {"output": "a"}),
        (b'[[1, "output"]]', "application/json", None, {}),
    ],
)
def test_request_options(body: bytes, content_type: str, attributes: str | None, expected: dict[str, str]) -> None:
    assert codecs.request_options(body, content_type, attributes) == expected

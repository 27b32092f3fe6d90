from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from modelyard import codecs
from modelyard.errors import ModelError, UnsupportedContentType


def test_csv_rows() -> None:
    rows = codecs.decode(b"1994,3188,5,1.5,1.62,3\n2001,1500,2,1,0.5,0\n", "text/csv", 6)
    assert rows.dtype == np.float32
    assert rows.shape == (2, 6)
    assert rows[1, 1] == 1500


def test_csv_empty_fields_are_missing_values() -> None:
    rows = codecs.decode(b"1,,3\r\n4,5,6", "text/csv")
    assert math.isnan(rows[0, 1])
    assert rows[1, 2] == 6


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1,2,abc", "Row 1, column 3: 'abc' is not a number"),
        (b"1,2,3\n1,2", "Row 2 has 2 values, row 1 has 3"),
        (b"", "no rows"),
        (b"1,2,3", "the model expects 6 features"),
    ],
)
def test_malformed_csv_names_the_row(body: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        codecs.decode(body, "text/csv", 6 if b"abc" not in body and b"\n" not in body and body else None)
    assert caught.value.original_status == 400


def test_libsvm() -> None:
    rows = codecs.decode(b"0 0:1.5 2:3\n1:2", "text/libsvm")
    assert rows.shape == (2, 3)
    assert rows[0, 0] == 1.5
    assert math.isnan(rows[0, 1])
    assert rows[1, 1] == 2
    with pytest.raises(ModelError, match="index:value"):
        codecs.decode(b"0 a:b", "text/libsvm")


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[1, 2], [3, 4]]}',
        b"[[1, 2], [3, 4]]",
        b'{"instances": [{"features": [1, 2]}, {"features": [3, 4]}]}',
    ],
)
def test_json_shapes(body: bytes) -> None:
    assert codecs.decode(body, "application/json").tolist() == [[1, 2], [3, 4]]


def test_json_single_row_and_errors() -> None:
    assert codecs.decode(b"[1, 2, null]", "application/json").shape == (1, 3)
    with pytest.raises(ModelError, match="not valid JSON"):
        codecs.decode(b"{", "application/json")
    with pytest.raises(ModelError, match="Row 2"):
        codecs.decode(b'[[1], ["x"]]', "application/json")


def test_npy_round_trip() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.float64).reshape(2, 3))
    assert codecs.decode(buffer.getvalue(), "application/x-npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ModelError):
        codecs.decode(b"not npy", "application/x-npy")


def test_encoders() -> None:
    predictions = np.array([315273.375, 0.1], dtype=np.float32)
    assert codecs.encode(predictions, "text/csv")[0] == b"315273.38\n0.1"
    doc = json.loads(codecs.encode(predictions, "application/json")[0])
    assert doc == {"predictions": [{"score": 315273.38}, {"score": 0.1}]}
    assert codecs.encode(np.array([[0.2, 0.8]], dtype=np.float32), "text/csv")[0] == b"0.2,0.8"
    body, media = codecs.encode(predictions, "application/x-npy")
    assert np.load(io.BytesIO(body)).tolist() == predictions.tolist()
    assert media == "application/x-npy"


def test_content_negotiation() -> None:
    assert codecs.content_type(None) == "text/csv"
    assert codecs.content_type("text/csv; charset=utf-8") == "text/csv"
    assert codecs.accept_type("application/json, text/csv") == "application/json"
    assert codecs.accept_type("*/*") == "text/csv"
    with pytest.raises(UnsupportedContentType):
        codecs.content_type("image/png")
    with pytest.raises(UnsupportedContentType):
        codecs.accept_type("image/png")

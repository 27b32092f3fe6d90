from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as nps

from modelyard import codecs, textrows
from modelyard.errors import ModelError, UnsupportedContentType
from tests import codecs_reference as reference


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


# -- the whole-body paths give exactly what the per-value reference gives ---------------------

# Small payloads take the per-value path; with these at 0 every payload takes the whole-body one.
PATHS = {"per value": {}, "whole body": {"VECTOR_BYTES": 0, "_VECTOR_VALUES": 0}}


@contextlib.contextmanager
def path(name: str) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for attribute, value in PATHS[name].items():
            module = textrows if attribute == "VECTOR_BYTES" else codecs
            stack.enter_context(mock.patch.object(module, attribute, value))
        yield


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """A result (its dtype, shape and bits) or an error (its type and message), to compare two implementations."""
    try:
        result = fn(*args)
    except ModelError as exc:
        return ("ModelError", exc.message, exc.original_status)
    except Exception as exc:  # noqa: BLE001 - whatever the reference raises, the fast path must raise too
        return (type(exc).__name__, str(exc))
    if isinstance(result, np.ndarray):
        return ("rows", result.dtype.str, result.shape, result.tobytes())
    if isinstance(result, list):
        return ("list", json.dumps(result))  # NaN is not equal to itself; its text is
    return ("value", result)


SPACES = st.sampled_from(["", "", "", " ", "\t", "  "])
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.3f}"),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda v: f"{v:.6e}"),
    st.integers(-(10**25), 10**25).map(str),
    st.integers(0, 99).map(str),
    st.sampled_from(["-0", "+1", ".5", "5.", "-.5", "1e5", "1E-5", "+.5e+3", "0.000000000000000000000123"]),
    st.sampled_from(["1" * 25, "00012", "1e400", "1e-400", "9007199254740993", "123456789012345678.5e-3"]),
    st.sampled_from(["0.1e23", "1.7976931348623157e308"]),
)
ODD_TEXT = st.sampled_from(
    ["", " ", "nan", "-inf", "Infinity", "1_000", "abc", "1.2.3", "--1", "1e", "e5", "0x10", "١٢", "é", "\x0b7", "1 2"]
)


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 7))
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.sampled_from(["", " ", "\t \t"])))
            continue
        count = width if kind > 2 else draw(st.integers(1, 7))
        fields = [
            draw(SPACES) + draw(st.one_of(NUMBER_TEXT, NUMBER_TEXT, NUMBER_TEXT, ODD_TEXT)) + draw(SPACES)
            for _ in range(count)
        ]
        lines.append(",".join(fields))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (ending.join(lines) + draw(st.sampled_from(["", ending]))).encode()


DTYPES = st.sampled_from([np.float32, np.float32, np.float64, np.int64, np.bool_, np.float16])


@pytest.mark.parametrize("way", list(PATHS))
@settings(max_examples=300, deadline=None)
@given(body=csv_bodies(), n_features=st.one_of(st.none(), st.integers(1, 7)), dtype=DTYPES)
def test_csv_as_the_reference_reads_it(way: str, body: bytes, n_features: int | None, dtype: Any) -> None:
    with path(way):
        assert outcome(codecs.decode, body, "text/csv", n_features, dtype) == outcome(
            reference.decode_csv, body, n_features, dtype
        )


@st.composite
def libsvm_bodies(draw: st.DrawFn) -> bytes:
    index = st.one_of(st.integers(0, 9).map(str), st.sampled_from(["+1", "-1", "01", "1_0", "", "x", "99"]))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        values = st.one_of(NUMBER_TEXT, NUMBER_TEXT, ODD_TEXT)
        words = [f"{draw(index)}:{draw(values)}" for _ in range(draw(st.integers(0, 5)))]
        words += draw(st.lists(st.sampled_from(["7", "1:2:3", ":", "3:"]), max_size=1))
        if draw(st.booleans()):
            words.insert(0, draw(st.sampled_from(["1", "0", "-1", "abc", "2.5"])))
        lines.append(draw(st.sampled_from([" ", "  ", "\t"])).join(words))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode()


@pytest.mark.parametrize("way", list(PATHS))
@settings(max_examples=300, deadline=None)
@given(body=libsvm_bodies(), n_features=st.one_of(st.none(), st.integers(1, 12)), dtype=DTYPES)
def test_libsvm_as_the_reference_reads_it(way: str, body: bytes, n_features: int | None, dtype: Any) -> None:
    with path(way):
        assert outcome(codecs.decode, body, "text/libsvm", n_features, dtype) == outcome(
            reference.decode_libsvm, body, n_features, dtype
        )


JSON_VALUE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**22), 10**22).map(str),
    st.sampled_from(["0", "-0", "-0.0", "1E5", "2.5e-3", "1e400", "null", "null", "12345678901234567890123"]),
    st.sampled_from(["01", "+1", "1.", ".5", "NaN", "-Infinity", "true", '"1.5"', '"x"', "[1]", "{}", "", "- 1"]),
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(0, 5))
    separator = draw(st.sampled_from([",", ", ", " ,\n  "]))

    def row() -> str:
        count = width if draw(st.integers(0, 9)) else draw(st.integers(0, 5))
        return "[" + separator.join(draw(JSON_VALUE) for _ in range(count)) + "]"

    rows = "[" + separator.join(row() for _ in range(draw(st.integers(0, 6)))) + "]"
    return draw(
        st.sampled_from(
            [
                rows,
                row(),
                '{"instances": ' + rows + "}",
                '{"inputs": ' + rows + ', "output": "predict_proba"}',
                '{"data": ' + rows + ', "instances": 5}',
                '{"x": "[[1]]", "instances": ' + rows + "}",
                '{"instances": [{"features": [1, 2]}, {"values": [3, 4]}]}',
                '{"instances": ' + rows + ', "x": "]"}',
                " \n" + rows + "\n ",
                rows[:-1],
                "[" + rows + "]",
            ]
        )
    ).encode()


@pytest.mark.parametrize("way", list(PATHS))
@settings(max_examples=300, deadline=None)
@given(body=json_bodies(), n_features=st.one_of(st.none(), st.integers(1, 5)), dtype=DTYPES)
def test_json_as_the_reference_reads_it(way: str, body: bytes, n_features: int | None, dtype: Any) -> None:
    with path(way):
        assert outcome(codecs.decode, body, "application/json", n_features, dtype) == outcome(
            reference.decode_json, body, n_features, dtype
        )
        assert outcome(codecs.request_options, body, "application/json", None) == outcome(
            reference.request_options, body, "application/json", None
        )


@st.composite
def jsonlines_bodies(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 4))
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        count = width if draw(st.integers(0, 9)) else draw(st.integers(0, 4))
        line = "[" + ", ".join(draw(JSON_VALUE) for _ in range(count)) + "]"
        lines.append(draw(st.sampled_from([line, line, line, '{"features": [1, 2]}', "5", "", " ", "[1, 2"])))
    return draw(st.sampled_from(["\n", "\r\n", "\n\n"])).join(lines).encode()


@pytest.mark.parametrize("way", list(PATHS))
@settings(max_examples=300, deadline=None)
@given(body=jsonlines_bodies(), n_features=st.one_of(st.none(), st.integers(1, 4)), dtype=DTYPES)
def test_jsonlines_as_the_reference_reads_it(way: str, body: bytes, n_features: int | None, dtype: Any) -> None:
    with path(way):
        assert outcome(codecs.decode, body, "application/jsonlines", n_features, dtype) == outcome(
            reference.decode_jsonlines, body, n_features, dtype
        )


PREDICTION_DTYPES: st.SearchStrategy[np.dtype[Any]] = st.sampled_from(
    [np.dtype(t) for t in ("f4", "f4", "f4", "f8", "i8", "i4", "u1", "?", "f2", "<U4")]
)


@st.composite
def predictions(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(PREDICTION_DTYPES)
    shape = draw(st.one_of(st.tuples(st.integers(0, 40)), st.tuples(st.integers(1, 12), st.integers(1, 4))))
    if dtype == np.float32 and draw(st.booleans()):  # any bit pattern: NaN payloads, subnormals, infinities
        bits = draw(nps.arrays(np.uint32, shape))
        return np.asarray(bits.view(np.float32))
    return np.asarray(draw(nps.arrays(dtype, shape)))


@pytest.mark.parametrize("way", list(PATHS))
@pytest.mark.parametrize("media", ["text/csv", "application/json"])
@settings(max_examples=300, deadline=None)
@given(values=predictions())
def test_predictions_written_as_the_reference_writes_them(way: str, media: str, values: np.ndarray) -> None:
    with path(way):
        assert outcome(codecs.encode, values, media) == outcome(lambda v: (reference.ENCODERS[media](v), media), values)
        assert outcome(codecs.plain, values) == outcome(reference.plain, values)


def test_float32_text_is_numpys_for_every_kind_of_float32() -> None:
    rng = np.random.default_rng(12)
    powers = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    tens = np.array([10.0**k for k in range(-45, 39)], dtype=np.float32)
    edges = np.concatenate([powers, tens])
    values = np.concatenate(
        [
            rng.integers(0, 2**32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
            rng.uniform(0, 1, 50_000).astype(np.float32),
            rng.uniform(-1e6, 1e6, 50_000).astype(np.float32),
            edges,
            np.nextafter(edges, np.float32(np.inf)),
            np.nextafter(edges, np.float32(0)),
            np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-4, 1e6, 9.999999e5], dtype=np.float32),
        ]
    )
    with path("whole body"):
        assert codecs.encode(values, "text/csv")[0] == reference.encode_csv(values)
        assert codecs.encode(values, "application/json")[0] == reference.encode_json(values)


def test_a_maximum_size_csv_body_is_read_whole() -> None:
    rows = np.random.default_rng(3).integers(0, 10, size=(500_000, 6))
    body = "\n".join(",".join(map(str, row)) for row in rows.tolist()).encode()
    assert len(body) == 5_999_999  # SageMaker's limit is 6,291,456 bytes
    decoded = codecs.decode(body, "text/csv", 6)
    assert decoded.shape == (500_000, 6)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded, rows.astype(np.float32))
    assert np.array_equal(codecs.decode(body.replace(b"\n", b"\r\n") + b"\r\n", "text/csv", 6), decoded)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1 1000000000:1", "feature index 1000000000 is out of range"),
        (b"1 3:1\n" * 100_000 + b"1 1000:1", "more than the 67108864 a request may hold"),
    ],
)
def test_libsvm_cannot_expand_a_small_body_into_a_huge_matrix(body: bytes, message: str) -> None:
    """A model without a feature count (inference.py) must not allocate rows × 10⁹ values for a tiny body."""
    with pytest.raises(ModelError, match=message):
        codecs.decode(body, "text/libsvm", None, np.float32)

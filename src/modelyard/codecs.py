"""Request and response payloads (SPEC §2): CSV, LIBSVM, JSON and NumPy.

Decoders turn a body into a 2-D array of rows in the model's dtype (``float32`` by
default, missing values as NaN, as XGBoost reads them); encoders turn predictions
(numbers, class labels, strings) into the Accept format. A malformed body is the
model's input error: :class:`ModelError` with OriginalStatusCode 400, naming the row
and the field. An unknown format is a :class:`UnsupportedContentType`.

A request may also choose which of a model's outputs it wants (``predict_proba``
rather than ``predict``): ``output=NAME`` in ``X-Amzn-SageMaker-Custom-Attributes``,
or an ``"output"`` field beside the rows of a JSON body (:func:`request_options`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelyard import jsonrows, numformat, textrows
from modelyard.errors import ModelError, UnsupportedContentType

__all__ = [
    "ACCEPTS",
    "CONTENT_TYPES",
    "accept_type",
    "as_rows",
    "content_type",
    "decode",
    "encode",
    "load_npy",
    "plain",
    "request_options",
]

_NAN = math.nan
# predictions from this many values on are written a whole array at a time (fewer are faster one by one)
_VECTOR_VALUES = 256
_JSON_KEYS = jsonrows.ROW_KEYS


def _media(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def as_rows(array: np.ndarray, n_features: int | None, dtype: Any = np.float32, what: str = "The input") -> np.ndarray:
    """A decoded array as 2-D rows of ``dtype``: one row when 1-D, refused beyond 2-D."""
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ModelError(f"{what} must have 1 or 2 dimensions (rows of features), it has {array.ndim}.")
    if array.shape[0] == 0:
        raise ModelError(f"{what} has no rows.")
    if n_features is not None and array.shape[1] != n_features:
        raise ModelError(f"{what} has rows of {array.shape[1]} values, the model expects {n_features} features.")
    try:
        return array.astype(dtype, copy=False)
    except (TypeError, ValueError):
        raise ModelError(f"{what} has values of type {array.dtype}, not numbers.") from None


def _json_doc(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"The body is not valid JSON: {exc}") from None


def _decode_json(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    rows = jsonrows.matrix(body) if len(body) >= textrows.VECTOR_BYTES else None
    if rows is None:
        return _json_rows(_json_doc(body), n_features, dtype)
    if n_features is not None and rows.shape[1] != n_features:
        raise ModelError(f"Rows have {rows.shape[1]} values, the model expects {n_features} features.")
    return textrows.rows_of(rows, dtype)


def _json_rows(doc: Any, n_features: int | None, dtype: Any) -> np.ndarray:
    if isinstance(doc, dict):
        for key in _JSON_KEYS:
            if key in doc:
                doc = doc[key]
                break
        else:
            raise ModelError('JSON body must be a list of rows or {"instances": [...]}.')
    if isinstance(doc, list) and doc and not isinstance(doc[0], list | dict):
        doc = [doc]
    if not isinstance(doc, list):
        raise ModelError('JSON body must be a list of rows or {"instances": [...]}.')
    listed = [row.get("features", row.get("values")) if isinstance(row, dict) else row for row in doc]
    try:  # numpy reads every value as float() would (None is NaN); anything else is worded below
        array = np.array(listed, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is not None and array.ndim == 2 and array.size:
        if n_features is not None and array.shape[1] != n_features:
            raise ModelError(f"Rows have {array.shape[1]} values, the model expects {n_features} features.")
        return textrows.rows_of(array, dtype)
    rows: list[list[float]] = []
    for number, row in enumerate(doc, 1):
        if isinstance(row, dict):
            row = row.get("features", row.get("values"))
        if not isinstance(row, list):
            raise ModelError(f"Row {number} is not a list of numbers.")
        try:
            rows.append([_NAN if v is None else float(v) for v in row])
        except (TypeError, ValueError):
            bad = next(i for i, v in enumerate(row, 1) if not _is_number(v))
            raise ModelError(f"Row {number}, column {bad}: {json.dumps(row[bad - 1])} is not a number.") from None
    return textrows.rows_to_array(rows, n_features, dtype)


def _decode_jsonlines(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    """One JSON row per line (a list, or an object with ``features``); a single JSON document also works."""
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) <= 1:
        return _decode_json(body, n_features, dtype)
    matrix = jsonrows.rows(b"[" + b",".join(lines) + b"]") if len(body) >= textrows.VECTOR_BYTES else None
    if matrix is not None and matrix.shape[0] == len(lines):
        if n_features is not None and matrix.shape[1] != n_features:
            raise ModelError(f"Rows have {matrix.shape[1]} values, the model expects {n_features} features.")
        return textrows.rows_of(matrix, dtype)
    rows: list[Any] = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"Line {number} is not valid JSON: {exc}") from None
    return _json_rows(rows, n_features, dtype)


def _is_number(value: Any) -> bool:
    try:
        float(value if value is not None else _NAN)
    except (TypeError, ValueError):
        return False
    return True


def load_npy(body: bytes) -> np.ndarray:
    """The array in a ``.npy`` body (never unpickled), any number of dimensions."""
    try:
        return np.asarray(np.load(io.BytesIO(body), allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"The body is not a valid .npy array: {exc}") from None


def _decode_npy(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    return as_rows(load_npy(body), n_features, dtype, "The .npy array")


def plain(values: np.ndarray) -> list[Any]:
    """Predictions as JSON-ready Python values (``float32`` printed at its own precision)."""
    if values.dtype == np.float32 and values.ndim and values.size >= _VECTOR_VALUES:  # float(str(v)), all at once
        listed_floats: list[Any] = numformat.float32_values(values).reshape(values.shape).tolist()
        return listed_floats
    if values.dtype == np.float32:
        return [float(str(v)) if v.ndim == 0 else plain(v) for v in values]
    if values.dtype.kind in "OSU":
        return [str(v) if np.ndim(v) == 0 else plain(np.asarray(v)) for v in values]
    listed: list[Any] = values.tolist()
    return listed


def _as_predictions(predictions: Any) -> np.ndarray:
    array = np.asarray(predictions)
    return array.reshape(1) if array.ndim == 0 else array


def _csv_cells(row: Any) -> list[str]:
    return [str(v) for v in (row if np.ndim(row) else [row])]


def _table(predictions: np.ndarray) -> np.ndarray | None:
    """Predictions as rows of numbers, when they are numbers in one or two dimensions, and many."""
    if predictions.ndim not in (1, 2) or predictions.dtype.kind not in "fiub":
        return None
    if not predictions.size or predictions.size < _VECTOR_VALUES:
        return None
    if predictions.dtype.kind == "f" and predictions.dtype not in (np.float32, np.float64):
        return None  # float16 and long double print their own way
    return predictions.reshape(len(predictions), -1)


def _encode_csv(predictions: np.ndarray) -> bytes:
    table = _table(predictions)
    if table is not None and table.dtype == np.float32:
        return numformat.float32_table(table, "numpy", cell_end=b",", row_end=b"\n")
    if table is not None:  # str() of a numpy number is str() of the Python number it holds
        if predictions.ndim == 1:
            return "\n".join(map(str, predictions.tolist())).encode()
        return "\n".join(",".join(map(str, row)) for row in predictions.tolist()).encode()
    if predictions.dtype.kind in "OSU":  # labels may hold commas or quotes: quote them as CSV does
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(_csv_cells(row) for row in predictions)
        return out.getvalue().rstrip("\n").encode()
    if predictions.ndim == 1:
        return "\n".join(map(str, predictions)).encode()
    return "\n".join(",".join(map(str, row)) for row in predictions).encode()


def _encode_json(predictions: np.ndarray) -> bytes:
    table = _table(predictions)
    if table is None:
        return json.dumps({"predictions": [{"score": score} for score in plain(predictions)]}).encode()
    one = predictions.ndim == 1
    if table.dtype == np.float32:
        scores = numformat.float32_table(
            table,
            "json",
            row_start=b'{"score": ' if one else b'{"score": [',
            cell_end=b", ",
            row_end=b"}, " if one else b"]}, ",
            end=b"}" if one else b"]}",
        )
        return b'{"predictions": [' + scores + b"]}"
    # json's own text for the numbers, cut between them: ", " and "], [" occur nowhere else
    listed = json.dumps(predictions.tolist())[1:-1]
    if one:
        scores_text = listed.replace(", ", '}, {"score": ')
        return ('{"predictions": [{"score": ' + scores_text + "}]}").encode()
    scores_text = listed.replace("], [", ']}, {"score": [')
    return ('{"predictions": [{"score": ' + scores_text + "}]}").encode()


def _encode_npy(predictions: np.ndarray) -> bytes:
    if predictions.dtype.kind == "O":  # .npy without pickle holds no Python objects
        try:
            predictions = np.asarray(predictions.tolist(), dtype=str if _all_text(predictions) else np.float64)
        except (TypeError, ValueError):
            raise ModelError("The predictions cannot be written as .npy (they are not numbers or text).") from None
    buffer = io.BytesIO()
    np.save(buffer, predictions, allow_pickle=False)
    return buffer.getvalue()


def _all_text(array: np.ndarray) -> bool:
    return all(isinstance(v, str | bytes) for v in array.flat)


_DECODERS: dict[str, Callable[[bytes, int | None, Any], np.ndarray]] = {
    "text/csv": textrows.decode_csv,
    "text/libsvm": textrows.decode_libsvm,
    "text/x-libsvm": textrows.decode_libsvm,
    "application/json": _decode_json,
    "application/jsonlines": _decode_jsonlines,
    "application/x-npy": _decode_npy,
}
_ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    "text/csv": _encode_csv,
    "application/json": _encode_json,
    "application/x-npy": _encode_npy,
}
CONTENT_TYPES = frozenset(_DECODERS)
ACCEPTS = frozenset(_ENCODERS)


def content_type(header: str | None) -> str:
    """The request's media type, ``text/csv`` when absent; unknown ones are refused."""
    media = _media(header) if header else "text/csv"
    if media not in _DECODERS:
        raise UnsupportedContentType(
            f"Content type '{header}' is not supported; use one of {', '.join(sorted(CONTENT_TYPES))}."
        )
    return media


def accept_type(header: str | None, default: str = "text/csv") -> str:
    """The response media type: the first supported one in Accept, else ``default``."""
    if not header:
        return default
    for part in header.split(","):
        media = _media(part)
        if media in _ENCODERS:
            return media
        if media in ("*/*", "text/*", "application/*"):
            return default
    raise UnsupportedContentType(f"Accept '{header}' is not supported; use one of {', '.join(sorted(ACCEPTS))}.")


def decode(body: bytes, media_type: str, n_features: int | None = None, dtype: Any = np.float32) -> np.ndarray:
    """Rows of ``dtype`` from a body in ``media_type`` (already checked)."""
    return _DECODERS[media_type](body, n_features, dtype)


def encode(predictions: Any, media_type: str) -> tuple[bytes, str]:
    """Serialise predictions as ``media_type`` (already checked)."""
    return _ENCODERS[media_type](_as_predictions(predictions)), media_type


def request_options(body: bytes, content_type: str | None, custom_attributes: str | None) -> dict[str, str]:
    """Options a request gives besides its rows: ``key=value`` pairs of the custom
    attributes (separated by ``;`` or ``,``), then top-level string fields of a JSON
    body other than the rows (``{"instances": [...], "output": "predict_proba"}``).
    """
    options: dict[str, str] = {}
    if custom_attributes:
        for pair in custom_attributes.replace(",", ";").split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                options[key.strip().lower()] = value.strip()
    # Reading the JSON twice is paid only by bodies that name an option, and not for their rows.
    if content_type and _media(content_type).startswith("application/json") and b'"output"' in body:
        doc = jsonrows.document(body) if len(body) >= textrows.VECTOR_BYTES else None
        if doc is None:
            doc = _json_doc(body)
        if isinstance(doc, dict):
            options.update(
                {
                    k: v
                    for k, v in doc.items()
                    if k not in _JSON_KEYS and isinstance(v, str) and not jsonrows.is_placeholder(v)
                }
            )
    return options

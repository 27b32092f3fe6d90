"""The per-value codecs, one value at a time with ``float()`` and ``str()``: the oracle.

This is how every payload was read and written before bodies were read a whole
body at a time; the property tests check that the fast paths give exactly the
same rows, text and errors.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.errors import ModelError

_NAN = math.nan
_JSON_KEYS = ("instances", "inputs", "features", "data")


def _rows_to_array(rows: Sequence[Sequence[float]], n_features: int | None, dtype: Any) -> np.ndarray:
    if not rows:
        raise ModelError("The request has no rows.")
    width = len(rows[0])
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise ModelError(f"Row {number} has {len(row)} values, row 1 has {width}.")
    if n_features is not None and width != n_features:
        raise ModelError(f"Rows have {width} values, the model expects {n_features} features.")
    return np.array(rows, dtype=dtype)


def _csv_field(text: bytes, row: int, column: int) -> float:
    if not text.strip():
        return _NAN
    try:
        return float(text)
    except ValueError:
        shown = text.decode("utf-8", "replace").strip()
        raise ModelError(f"Row {row}, column {column}: '{shown}' is not a number.") from None


def decode_csv(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    rows: list[list[float]] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(b",")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            rows.append([_csv_field(f, number, col) for col, f in enumerate(fields, 1)])
    return _rows_to_array(rows, n_features, dtype)


def decode_libsvm(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    parsed: list[dict[int, float]] = []
    width = n_features or 0
    for number, line in enumerate(body.decode("utf-8", "replace").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        row: dict[int, float] = {}
        for token in tokens[1:] if ":" not in tokens[0] else tokens:
            index, _, value = token.partition(":")
            try:
                row[int(index)] = float(value)
            except ValueError:
                raise ModelError(f"Row {number}: '{token}' is not index:value.") from None
            if int(index) < 0 or (n_features is not None and int(index) >= n_features):
                raise ModelError(f"Row {number}: feature index {index} is out of range.")
        width = max(width, max(row, default=-1) + 1)
        parsed.append(row)
    if not parsed:
        raise ModelError("The request has no rows.")
    matrix = np.full((len(parsed), width), np.nan, dtype=dtype)
    for i, row in enumerate(parsed):
        for j, cell in row.items():
            matrix[i, j] = cell
    return matrix


def _json_doc(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"The body is not valid JSON: {exc}") from None


def _is_number(value: Any) -> bool:
    try:
        float(value if value is not None else _NAN)
    except (TypeError, ValueError):
        return False
    return True


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
    return _rows_to_array(rows, n_features, dtype)


def decode_json(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    return _json_rows(_json_doc(body), n_features, dtype)


def decode_jsonlines(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) <= 1:
        return decode_json(body, n_features, dtype)
    rows: list[Any] = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"Line {number} is not valid JSON: {exc}") from None
    return _json_rows(rows, n_features, dtype)


def plain(values: np.ndarray) -> list[Any]:
    if values.dtype == np.float32:
        return [float(str(v)) if v.ndim == 0 else plain(v) for v in values]
    if values.dtype.kind in "OSU":
        return [str(v) if np.ndim(v) == 0 else plain(np.asarray(v)) for v in values]
    listed: list[Any] = values.tolist()
    return listed


def _csv_cells(row: Any) -> list[str]:
    return [str(v) for v in (row if np.ndim(row) else [row])]


def encode_csv(predictions: np.ndarray) -> bytes:
    if predictions.dtype.kind in "OSU":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(_csv_cells(row) for row in predictions)
        return out.getvalue().rstrip("\n").encode()
    if predictions.ndim == 1:
        return "\n".join(map(str, predictions)).encode()
    return "\n".join(",".join(map(str, row)) for row in predictions).encode()


def encode_json(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": [{"score": score} for score in plain(predictions)]}).encode()


def request_options(body: bytes, content_type: str | None, custom_attributes: str | None) -> dict[str, str]:
    options: dict[str, str] = {}
    if custom_attributes:
        for pair in custom_attributes.replace(",", ";").split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip():
                options[key.strip().lower()] = value.strip()
    media = content_type.split(";", 1)[0].strip().lower() if content_type else ""
    if media.startswith("application/json") and b'"output"' in body:
        doc = _json_doc(body)
        if isinstance(doc, dict):
            options.update({k: v for k, v in doc.items() if k not in _JSON_KEYS and isinstance(v, str)})
    return options


DECODERS = {
    "text/csv": decode_csv,
    "text/libsvm": decode_libsvm,
    "application/json": decode_json,
    "application/jsonlines": decode_jsonlines,
}
ENCODERS = {"text/csv": encode_csv, "application/json": encode_json}

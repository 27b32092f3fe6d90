"""Request and response payloads (SPEC §2): CSV, LIBSVM, JSON and NumPy.

Decoders turn a body into a 2-D ``float32`` array of rows (missing values as NaN, as
XGBoost reads them); encoders turn predictions into the Accept format. A malformed
body is the model's input error: :class:`ModelError` with OriginalStatusCode 400,
naming the row and the field. An unknown format is a :class:`UnsupportedContentType`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelyard.errors import ModelError, UnsupportedContentType

__all__ = ["ACCEPTS", "CONTENT_TYPES", "accept_type", "content_type", "decode", "encode"]

_NAN = math.nan


def _media(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _rows_to_array(rows: Sequence[Sequence[float]], n_features: int | None) -> np.ndarray:
    if not rows:
        raise ModelError("The request has no rows.")
    width = len(rows[0])
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise ModelError(f"Row {number} has {len(row)} values, row 1 has {width}.")
    if n_features is not None and width != n_features:
        raise ModelError(f"Rows have {width} values, the model expects {n_features} features.")
    return np.array(rows, dtype=np.float32)


def _csv_field(text: bytes, row: int, column: int) -> float:
    if not text.strip():
        return _NAN
    try:
        return float(text)
    except ValueError:
        shown = text.decode("utf-8", "replace").strip()
        raise ModelError(f"Row {row}, column {column}: '{shown}' is not a number.") from None


def _decode_csv(body: bytes, n_features: int | None) -> np.ndarray:
    rows: list[list[float]] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(b",")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:  # empty fields are missing values; anything else is an error
            rows.append([_csv_field(f, number, col) for col, f in enumerate(fields, 1)])
    return _rows_to_array(rows, n_features)


def _decode_libsvm(body: bytes, n_features: int | None) -> np.ndarray:
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
    matrix = np.full((len(parsed), width), np.nan, dtype=np.float32)
    for i, row in enumerate(parsed):
        for j, cell in row.items():
            matrix[i, j] = cell
    return matrix


def _decode_json(body: bytes, n_features: int | None) -> np.ndarray:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"The body is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        for key in ("instances", "inputs", "features", "data"):
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
            raise ModelError(f"Row {number} holds a value that is not a number.") from None
    return _rows_to_array(rows, n_features)


def _decode_npy(body: bytes, n_features: int | None) -> np.ndarray:
    try:
        array: np.ndarray = np.asarray(np.load(io.BytesIO(body), allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(f"The body is not a valid .npy array: {exc}") from None
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ModelError(f"The .npy array must have 1 or 2 dimensions, it has {array.ndim}.")
    if n_features is not None and array.shape[1] != n_features:
        raise ModelError(f"Rows have {array.shape[1]} values, the model expects {n_features} features.")
    try:
        return array.astype(np.float32, copy=False)
    except (TypeError, ValueError):
        raise ModelError(f"The .npy array has dtype {array.dtype}, not numbers.") from None


def _encode_csv(predictions: np.ndarray) -> bytes:
    if predictions.ndim == 1:
        return "\n".join(map(str, predictions)).encode()
    return "\n".join(",".join(map(str, row)) for row in predictions).encode()


def _score(value: Any) -> Any:
    return float(str(value)) if np.ndim(value) == 0 else [float(str(v)) for v in value]


def _encode_json(predictions: np.ndarray) -> bytes:
    return json.dumps({"predictions": [{"score": _score(row)} for row in predictions]}).encode()


def _encode_npy(predictions: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, predictions, allow_pickle=False)
    return buffer.getvalue()


_DECODERS: dict[str, Callable[[bytes, int | None], np.ndarray]] = {
    "text/csv": _decode_csv,
    "text/libsvm": _decode_libsvm,
    "text/x-libsvm": _decode_libsvm,
    "application/json": _decode_json,
    "application/jsonlines": _decode_json,
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


def decode(body: bytes, media_type: str, n_features: int | None = None) -> np.ndarray:
    """Rows of ``float32`` from a body in ``media_type`` (already checked)."""
    return _DECODERS[media_type](body, n_features)


def encode(predictions: Any, media_type: str) -> tuple[bytes, str]:
    """Serialise predictions as ``media_type`` (already checked)."""
    return _ENCODERS[media_type](np.asarray(predictions)), media_type

"""Typed model inputs from an MLflow signature's columns.

An MLflow signature with columns (``ColSpec``) gives each column a name (or none),
a type (``double``, ``long``, ``string``...) and whether it is required. A request's
values, positional rows (CSV, JSON lists, ``.npy``, a V2 tensor of rows) or named
columns (a CSV header, JSON records, V2 tensors named after columns), become a pandas
DataFrame whose columns have exactly the signature's dtypes, so MLflow's own schema
enforcement accepts them. A value that does not fit its column is a
:class:`ModelError` naming the row and the column: ``Row 2, column 'beds': 2.5 is
not a whole number (the signature makes it a long).``

Nothing here imports MLflow; pandas is imported when a frame is built (it is
installed with MLflow, and imported already once a model is loaded).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from modelyard.errors import ModelError
from modelyard.handlers.base import TensorSpec

__all__ = [
    "Column",
    "frame_from_array",
    "frame_from_csv",
    "frame_from_named",
    "frame_from_records",
    "frame_from_rows",
    "tensor_specs",
]

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}
_NUMERIC = {"integer", "long", "float", "double"}


class Column(NamedTuple):
    """One column of a signature: MLflow's type name (``object`` for arrays, objects, maps, any)."""

    name: str | None
    type: str
    dtype: np.dtype[Any]
    required: bool = True

    @property
    def label(self) -> str:
        return repr(self.name) if self.name is not None else "?"


# -- one value -------------------------------------------------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool):  # JSON true is not 1.0 here: a boolean in a number column is a mistake
        raise ValueError(f"{str(value).lower()} is not a number")
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_shown(value)} is not a number") from None


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a whole number")
    if isinstance(value, int | np.integer):
        return int(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("a missing value, which a whole-number column cannot hold")
    try:
        number = int(value) if isinstance(value, str) and value.strip().lstrip("+-").isdigit() else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{_shown(value)} is not a whole number") from None
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{_shown(value)} is not a whole number")
    return int(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{_shown(value)} is not a boolean (true or false)")


def _string(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise ValueError(f"{_shown(value)} is not a string")


def _binary(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"{_shown(value)} is not base64") from None
    raise ValueError(f"{_shown(value)} is not base64 text")


def _datetime(value: Any) -> np.datetime64:
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return np.datetime64(text, "ns")
    except (TypeError, ValueError):
        raise ValueError(f"{_shown(value)} is not a date and time (ISO 8601)") from None


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "integer": _whole,
    "long": _whole,
    "float": _number,
    "double": _number,
    "boolean": _boolean,
    "string": _string,
    "binary": _binary,
    "datetime": _datetime,
}


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text[:40]) if isinstance(value, str) else text[:40]


def _typed(values: Sequence[Any], column: Column, where: Callable[[int], str]) -> np.ndarray:
    """``values`` as an array of the column's dtype; ``where(i)`` names element i in errors."""
    convert = _CONVERTERS.get(column.type)
    if convert is None:  # arrays, objects, maps, any: MLflow checks them itself
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    converted = []
    for i, value in enumerate(values):
        try:
            converted.append(convert(value))
        except ValueError as exc:
            raise ModelError(f"{where(i)}: {exc} (the signature makes it {column.type}).") from None
    if column.type in ("integer", "long"):
        info = np.iinfo(column.dtype)
        if any(not info.min <= v <= info.max for v in converted):
            bad = next(i for i, v in enumerate(converted) if not info.min <= v <= info.max)
            raise ModelError(f"{where(bad)}: {converted[bad]} is out of range for {column.type}.")
    if column.dtype.kind in "OUS":
        out = np.empty(len(converted), dtype=object)
        out[:] = converted
        return out
    return np.asarray(converted, dtype=column.dtype)


def _cast(values: np.ndarray, column: Column, what: str) -> np.ndarray:
    """A numeric array to the column's dtype at array speed; anything else value by value."""
    kind = values.dtype.kind
    if column.type in ("float", "double") and kind in "fiu":
        return values.astype(column.dtype)
    if column.type in ("integer", "long") and kind in "iu":
        info = np.iinfo(column.dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ModelError(f"{what} has values out of range for {column.type} (column {column.label}).")
        return values.astype(column.dtype)
    if column.type in ("integer", "long") and kind == "f":
        if not np.all(np.isfinite(values) & (values == np.rint(values))):
            bad = values[~(np.isfinite(values) & (values == np.rint(values)))][0]
            raise ModelError(
                f"{what}: {bad} is not a whole number (the signature makes column {column.label} {column.type})."
            )
        return _cast(values.astype(np.int64), column, what)
    if column.type == "boolean" and kind == "b":
        return values
    return _typed(values.tolist(), column, lambda i: f"{what}, element {i + 1}")


def _cell(column: Column, first_row: int) -> Callable[[int], str]:
    """Names the i-th value of ``column`` in errors: ``Row 3, column 'beds'``."""
    return lambda i: f"Row {i + first_row}, column {column.label}"


def _frame(arrays: Sequence[tuple[Column, np.ndarray]]) -> Any:
    import pandas as pd

    named = all(column.name is not None for column, _ in arrays)
    data = {(column.name if named else j): array for j, (column, array) in enumerate(arrays)}
    return pd.DataFrame(data)


# -- positional rows ---------------------------------------------------------------


def _width_error(width: int, columns: Sequence[Column], where: str) -> ModelError:
    names = ", ".join(str(c.name) for c in columns) if columns[0].name is not None else f"{len(columns)} columns"
    return ModelError(f"{where} has {width} values; the model's signature has {len(columns)}: {names}.")


def frame_from_rows(rows: Sequence[Sequence[Any]], columns: Sequence[Column], first_row: int = 1) -> Any:
    """Positional rows (CSV fields or JSON values) as a typed DataFrame."""
    if not rows:
        raise ModelError("The request has no rows.")
    for number, row in enumerate(rows, first_row):
        if len(row) != len(columns):
            raise _width_error(len(row), columns, f"Row {number}")
    return _frame([(c, _typed([row[j] for row in rows], c, _cell(c, first_row))) for j, c in enumerate(columns)])


def frame_from_array(array: np.ndarray, columns: Sequence[Column], what: str = "The input") -> Any:
    """A 1-D (one row) or 2-D array of rows as a typed DataFrame, column by column."""
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ModelError(f"{what} must have 1 or 2 dimensions (rows of columns), it has {array.ndim}.")
    if array.shape[0] == 0:
        raise ModelError(f"{what} has no rows.")
    if array.shape[1] != len(columns):
        raise _width_error(array.shape[1], columns, f"{what}'s rows")
    return _frame([(c, _cast(array[:, j], c, f"{what}, column {c.label}")) for j, c in enumerate(columns)])


def _check_names(given: Sequence[str], columns: Sequence[Column], what: str) -> list[Column]:
    present = [c for c in columns if c.name in given]
    missing = [str(c.name) for c in columns if c.required and c.name not in given]
    if missing:
        raise ModelError(f"{what} lacks the column(s) {', '.join(missing)} the model's signature requires.")
    return present


def frame_from_named(tensors: Mapping[str, np.ndarray], columns: Sequence[Column], what: str = "Input") -> Any:
    """One 1-D tensor (or ``[rows, 1]``) per column, by name, as a typed DataFrame."""
    present = _check_names(list(tensors), columns, "The request")
    arrays = []
    for column in present:
        tensor = tensors[str(column.name)]
        if tensor.ndim == 2 and tensor.shape[1] == 1:
            tensor = tensor.reshape(-1)
        if tensor.ndim != 1:
            shape = list(tensor.shape)
            raise ModelError(f"{what} '{column.name}' must be 1-D (one value per row), it has shape {shape}.")
        arrays.append((column, _cast(tensor, column, f"{what} '{column.name}'")))
    lengths = {len(array) for _, array in arrays}
    if len(lengths) > 1:
        raise ModelError(f"The inputs have different lengths: {', '.join(str(len(a)) for _, a in arrays)}.")
    return _frame(arrays)


def frame_from_records(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> Any:
    """JSON records (``[{"column": value, ...}, ...]``) as a typed DataFrame; other keys are ignored."""
    if not records:
        raise ModelError("The request has no rows.")
    for number, record in enumerate(records, 1):
        _check_names(list(record), columns, f"Row {number}")
    present = [c for c in columns if any(c.name in record for record in records)]
    return _frame([(c, _typed([r.get(str(c.name)) for r in records], c, _cell(c, 1))) for c in present])


# -- CSV ----------------------------------------------------------------------------


def frame_from_csv(body: bytes, columns: Sequence[Column]) -> Any:
    """CSV rows as a typed DataFrame; a first row made of the signature's column names is a header.

    With a header the columns may come in any order and optional ones may be left out.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(f"The CSV body is not UTF-8: {exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(field.strip() for field in row)]
    if not rows:
        raise ModelError("The request has no rows.")
    names = {c.name for c in columns if c.name is not None}
    header = [field.strip() for field in rows[0]]
    if names and header and all(field in names for field in header):
        if len(set(header)) != len(header):
            raise ModelError(f"The CSV header names a column twice: {', '.join(header)}.")
        present = _check_names(header, columns, "The CSV header")
        by_name = {c.name: c for c in present}
        if len(rows) == 1:
            raise ModelError("The CSV body has a header and no rows.")
        return frame_from_rows(rows[1:], [by_name[name] for name in header], first_row=2)
    try:
        return frame_from_rows(rows, columns)
    except ModelError as exc:
        unknown = [field for field in header if field and field not in names]
        if names and any(field in names for field in header):  # a header with a typo reads as a bad data row
            raise ModelError(
                f"Row 1 looks like a header, but names column(s) the signature lacks: {', '.join(unknown)}; "
                f"its columns are {', '.join(str(c.name) for c in columns)}."
            ) from exc
        raise


# -- V2 -------------------------------------------------------------------------------


def tensor_specs(columns: Sequence[Column]) -> list[TensorSpec]:
    """The V2 inputs of a column signature: one 1-D tensor per named column, else one of rows."""
    if columns and all(c.name is not None for c in columns):
        return [TensorSpec(str(c.name), _v2_dtype(c), (-1,)) for c in columns]
    dtypes = {_v2_dtype(c) for c in columns}
    dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(object)
    return [TensorSpec("input-0", dtype, (-1, len(columns)))]


def _v2_dtype(column: Column) -> np.dtype[Any]:
    """Text, bytes, dates and nested values travel as V2 ``BYTES``."""
    return column.dtype if column.dtype.kind in "biuf" else np.dtype(object)

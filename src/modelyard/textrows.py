"""Rows from text bodies: ``text/csv`` and ``text/libsvm``, a whole body at a time.

Both read their numbers with :func:`modelyard.numparse.scan` and keep the rules
and messages of reading them one line and one value at a time with ``float()``:

- CSV: one row per line (``\\n``, ``\\r\\n`` or ``\\r``, as ``bytes.splitlines``);
  lines of nothing but whitespace are skipped; a field is ``float(field)``, NaN
  when empty or blank; rows must all have the width of the first. Errors name the
  line (counting skipped ones) and the column.
- LIBSVM: ``[label] index:value ...`` per line, whitespace separated; features
  missing from a row are NaN, the width is the largest index + 1 (at least the
  model's feature count); a later duplicate index wins. A model that does not say
  its feature count takes indices below :data:`MAX_FEATURES`, and the dense rows
  may hold at most :data:`MAX_CELLS` values (a 20-byte body must not allocate GBs).

Anything the vectorised reading does not vouch for (a field ``float()`` must judge,
a line LIBSVM's looser rules might read differently) is read the straightforward
way, so the answer, or the error, is always the one of the line-by-line reading.
Bodies under :data:`VECTOR_BYTES` are read line by line: a few rows are faster so
(numpy's per-call costs add up to ~0.1 ms; one row costs a few µs line by line).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard import numparse
from modelyard.errors import ModelError

__all__ = ["MAX_CELLS", "MAX_FEATURES", "VECTOR_BYTES", "decode_csv", "decode_libsvm", "rows_of", "rows_to_array"]

MAX_FEATURES = 1 << 20
"""Largest LIBSVM feature index + 1 for a model that does not say how many features it takes."""
MAX_CELLS = 1 << 26
"""Most values LIBSVM rows may expand to (256 MiB of float32)."""


def _dense(rows: int, width: int, dtype: Any) -> np.ndarray:
    if rows * width > MAX_CELLS:
        raise ModelError(
            f"The LIBSVM rows would expand to {rows} × {width} values, more than the {MAX_CELLS} a request may hold."
        )
    return np.full((rows, width), np.nan, dtype=dtype)


#: bodies from this size on are read a whole body at a time (about 150 CSV rows: where both ways cost the same)
VECTOR_BYTES = 8192


def rows_of(values: np.ndarray, dtype: Any) -> np.ndarray:
    """Rows of float64 values as ``dtype``, converted as ``np.array(list_of_floats, dtype)`` would."""
    if np.dtype(dtype).kind == "f":
        return values.astype(dtype, copy=False)
    return np.array(values.tolist(), dtype=dtype)  # integers and booleans: numpy's rules for Python floats


def _normalise_newlines(body: bytes) -> bytes:
    if b"\r" in body:
        return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return body


def rows_to_array(rows: Sequence[Sequence[float]], n_features: int | None, dtype: Any) -> np.ndarray:
    """Rows of Python floats as an array, refusing no rows, uneven rows and the wrong width."""
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
        return np.nan
    try:
        return float(text)
    except ValueError:
        shown = text.decode("utf-8", "replace").strip()
        raise ModelError(f"Row {row}, column {column}: '{shown}' is not a number.") from None


def decode_csv(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    """CSV rows (see module doc)."""
    if len(body) < VECTOR_BYTES:
        return _csv_lines(body, n_features, dtype)
    tokens = numparse.scan(_normalise_newlines(body), b",\n")
    text, kinds, values = tokens.text, tokens.kinds, tokens.values
    line_last = np.flatnonzero(tokens.after != ord(","))  # each line's last token
    line_first = np.empty_like(line_last)
    line_first[0] = 0
    line_first[1:] = line_last[:-1] + 1
    # fields float() must judge: spaces it strips, nan/inf, underscores, or not numbers at all
    blank = kinds == numparse.EMPTY
    for index in np.flatnonzero(kinds == numparse.HARD).tolist():
        field = text[tokens.starts[index] : tokens.ends[index]]
        if not field.strip():
            blank[index] = True
            continue
        try:
            values[index] = float(field)
        except ValueError:  # worded with the field's line and column
            line = int(np.searchsorted(line_last, index))
            _csv_field(field, line + 1, index - int(line_first[line]) + 1)
    widths = line_last - line_first + 1
    kept = ~((widths == 1) & blank[line_last])  # a line of nothing but whitespace is no row
    if not kept.any():
        raise ModelError("The request has no rows.")
    widths = widths[kept]
    width = int(widths[0])
    uneven = np.flatnonzero(widths != width)
    if len(uneven):
        row = int(uneven[0])
        raise ModelError(f"Row {row + 1} has {widths[row]} values, row 1 has {width}.")
    if n_features is not None and width != n_features:
        raise ModelError(f"Rows have {width} values, the model expects {n_features} features.")
    if not kept.all():
        values = values[np.repeat(kept, line_last - line_first + 1)]
    return rows_of(values.reshape(-1, width), dtype)


def _csv_lines(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    rows: list[list[float]] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(b",")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:  # empty fields are missing values; anything else is an error
            rows.append([_csv_field(f, number, col) for col, f in enumerate(fields, 1)])
    return rows_to_array(rows, n_features, dtype)


# Bytes that str.splitlines() or str.split() treat as line breaks or spaces besides \n, \r, space and
# tab, and bytes that are not ASCII: bodies holding any are read line by line.
_LIBSVM_UNUSUAL = np.zeros(256, dtype=bool)
_LIBSVM_UNUSUAL[[0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x1F]] = True
_LIBSVM_UNUSUAL[0x80:] = True


def decode_libsvm(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    """LIBSVM rows (see module doc)."""
    data = np.frombuffer(body, dtype=np.uint8)
    if len(body) < VECTOR_BYTES or np.dtype(dtype).kind != "f" or _LIBSVM_UNUSUAL[data].any():
        return _libsvm_lines(body, n_features, dtype)
    tokens = numparse.scan(_normalise_newlines(body), b" \t\n:", spaces=b"")
    text = tokens.text
    # words: what lies between whitespace; a word's tokens are joined by colons
    word_last = np.flatnonzero(tokens.after != ord(":"))
    word_first = np.empty_like(word_last)
    word_first[0] = 0
    word_first[1:] = word_last[:-1] + 1
    parts = word_last - word_first + 1
    line_end = (tokens.after[word_last] == ord("\n")) | (word_last == len(tokens) - 1)
    line = np.cumsum(line_end) - line_end  # each word's line, counting from 0
    empty = (parts == 1) & (tokens.ends[word_first] == tokens.starts[word_first])
    words = np.flatnonzero(~empty)
    if not len(words):
        raise ModelError("The request has no rows.")
    word_line = line[words]
    opens = np.ones(len(words), dtype=bool)  # the first word of its line
    opens[1:] = word_line[1:] != word_line[:-1]
    features = words[~(opens & (parts[words] == 1))]  # a first word without a colon is the label
    rows = np.cumsum(opens) - 1  # each word's row
    feature_rows = rows[~(opens & (parts[words] == 1))]
    index_token, value_token = word_first[features], word_last[features]
    fast = (
        (parts[features] == 2)
        & tokens.digits_only[index_token]
        & (tokens.ends[index_token] - tokens.starts[index_token] <= 15)
        & (tokens.kinds[value_token] == numparse.NUMBER)
    )
    columns = np.where(fast, tokens.values[index_token], 0).astype(np.int64)
    values = tokens.values[value_token].copy()
    # the first word in the body that is not index:value or whose index is out of range is the error
    limit = n_features if n_features is not None else MAX_FEATURES
    out_of_range = np.flatnonzero(fast & (columns >= limit))
    first_bad = int(out_of_range[0]) if len(out_of_range) else len(features)
    for k in np.flatnonzero(~fast).tolist():
        if k > first_bad:
            break
        word = text[tokens.starts[index_token[k]] : tokens.ends[value_token[k]]].decode("ascii")
        index, _, value = word.partition(":")
        try:
            columns[k], values[k] = int(index), float(value)
        except ValueError:
            raise ModelError(f"Row {line[features[k]] + 1}: '{word}' is not index:value.") from None
        if columns[k] < 0 or columns[k] >= limit:
            first_bad = k
    if first_bad < len(features):
        index_text = text[tokens.starts[index_token[first_bad]] : tokens.ends[index_token[first_bad]]]
        number = line[features[first_bad]] + 1
        raise ModelError(f"Row {number}: feature index {index_text.decode('ascii')} is out of range.")
    width = max(n_features or 0, int(columns.max()) + 1 if len(columns) else 0)
    matrix = _dense(int(rows[-1]) + 1, width, dtype)
    cells = feature_rows * width + columns
    if len(cells) and np.bincount(cells).max() > 1:  # an index repeated in a row: the last one wins
        last = dict(zip(cells.tolist(), values.tolist(), strict=True))
        cells, values = np.fromiter(last, dtype=np.int64, count=len(last)), np.array(list(last.values()))
    matrix.reshape(-1)[cells] = values
    return matrix


def _libsvm_lines(body: bytes, n_features: int | None, dtype: Any) -> np.ndarray:
    """LIBSVM read line by line: small bodies, dtypes other than floats, bodies with unusual bytes."""
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
            if not 0 <= int(index) < (n_features if n_features is not None else MAX_FEATURES):
                raise ModelError(f"Row {number}: feature index {index} is out of range.")
        width = max(width, max(row, default=-1) + 1)
        parsed.append(row)
    if not parsed:
        raise ModelError("The request has no rows.")
    matrix = _dense(len(parsed), width, dtype)
    for i, row in enumerate(parsed):
        for j, cell in row.items():
            matrix[i, j] = cell
    return matrix

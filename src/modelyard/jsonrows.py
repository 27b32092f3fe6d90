"""The rows of a JSON body read without building a Python object per number.

A JSON request is mostly one array of rows of numbers: ``[[1, 2.5], [3, null]]``,
a single row ``[1, 2.5]``, or such an array under a key (``{"instances": ...}``,
possibly beside other fields such as ``"output"``). :func:`matrix` finds that
array (from the first ``[`` to the last ``]``), checks that it is exactly that
shape in strict JSON (numbers as JSON writes them, ``null``, whitespace), reads
its numbers with :mod:`modelyard.numparse`, and parses the rest of the document
with :mod:`json` with a placeholder where the array was, to learn whether the
array is where the rows are taken from.

It answers None whenever it cannot vouch for the result (anything else in the
array, a number it cannot read exactly, ``NaN``/``Infinity``, the array not
being the rows): the caller then parses the whole body with :mod:`json`, which
also words any error.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelyard import numparse

__all__ = ["ROW_KEYS", "document", "envelope", "is_placeholder", "matrix", "rows"]

#: the keys a JSON object may hold its rows under, in order of preference
ROW_KEYS = ("instances", "inputs", "features", "data")

_PLACEHOLDER = b'"modelyard:rows:0c5e9a1f"'


def _region(body: bytes) -> tuple[int, int] | None:
    start, end = body.find(b"["), body.rfind(b"]")
    return (start, end + 1) if 0 <= start < end else None


def envelope(body: bytes) -> tuple[Any, tuple[int, int]] | None:
    """The document with its array of rows replaced by a placeholder, and the array's span.

    None when there is no such array or the rest is not valid JSON.
    """
    span = _region(body)
    if span is None or _PLACEHOLDER in body:
        return None
    try:
        doc = json.loads(body[: span[0]] + _PLACEHOLDER + body[span[1] :])
    except (ValueError, UnicodeDecodeError):
        return None
    return doc, span


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` is where :func:`envelope` took the array out."""
    return isinstance(value, str) and value == _PLACEHOLDER[1:-1].decode()


def matrix(body: bytes) -> np.ndarray | None:
    """The rows of a JSON body as a 2-D float64 array (see module doc), or None."""
    found = envelope(body)
    if found is None:
        return None
    doc, (start, end) = found
    if isinstance(doc, dict):
        key = next((k for k in ROW_KEYS if k in doc), None)
        if key is None or not is_placeholder(doc[key]):
            return None
    elif not is_placeholder(doc):
        return None
    return rows(body[start:end])


def document(body: bytes) -> Any:
    """The parsed body with its array of rows as the placeholder string, or None.

    Only when that array is rows of numbers, so that the rest of the document is
    exactly what parsing the whole body would give.
    """
    found = envelope(body)
    if found is None:
        return None
    doc, (start, end) = found
    return doc if rows(body[start:end]) is not None else None


def rows(region: bytes) -> np.ndarray | None:
    """An array of rows ``[[...], [...]]`` or a single row ``[...]``, each value a JSON number or null.

    Every row must have the width of the first, so the separators follow one pattern:
    ``[`` then, per row, ``[``, a comma between values, ``]`` and a comma (the last
    row's is the closing ``]``). Checked all at once against that pattern.
    """
    tokens = numparse.scan(region, b",[]", spaces=b" \t\n\r", json=True)
    seps = tokens.after[:-1]
    if len(seps) < 2:
        return None
    if seps[1] != ord("["):  # a single row: [ v , v , ... ]
        width, count, offset = len(seps) - 1, 1, 1
        pattern = np.full(len(seps), ord(","), dtype=np.uint8)
        pattern[0], pattern[-1] = ord("["), ord("]")
        if not np.array_equal(seps, pattern):
            return None
        blanks = tokens.kinds[[0, len(tokens) - 1]]
    else:
        closing = np.flatnonzero(seps == ord("]"))
        width = int(closing[0]) - 1
        period = width + 2  # per row: '[', width - 1 commas, ']', then ',' (or the closing ']')
        count, leftover = divmod(len(seps) - 1, period)
        if width < 1 or leftover:
            return None
        pattern = np.full(period, ord(","), dtype=np.uint8)
        pattern[0], pattern[width] = ord("["), ord("]")
        shaped = seps[1:].reshape(count, period)
        if not (np.array_equal(shaped[:-1], np.broadcast_to(pattern, (count - 1, period))) and seps[0] == ord("[")):
            return None
        pattern[-1] = ord("]")
        if not np.array_equal(shaped[-1], pattern):
            return None
        offset = 2
        blanks = np.concatenate((tokens.kinds[:2], tokens.kinds[2:].reshape(count, period)[:, width:].ravel()))
    if (blanks != numparse.EMPTY).any():
        return None
    grid = slice(offset, offset + count * (width + 2 if offset == 2 else width))
    kinds = tokens.kinds[grid].reshape(count, -1)[:, :width]
    values = tokens.values[grid].reshape(count, -1)[:, :width]
    if (kinds != numparse.NUMBER).any() and not _nulls(tokens, offset, width, kinds):
        return None
    return values


def _nulls(tokens: numparse.Tokens, offset: int, width: int, kinds: np.ndarray) -> bool:
    """Whether every value that is not a number is ``null`` (NaN already)."""
    period = width + 2 if offset == 2 else width
    for row, column in zip(*np.nonzero(kinds != numparse.NUMBER), strict=True):
        index = offset + int(row) * period + int(column)
        if tokens.text[tokens.starts[index] : tokens.ends[index]].strip(b" \t\n\r") != b"null":
            return False
    return True

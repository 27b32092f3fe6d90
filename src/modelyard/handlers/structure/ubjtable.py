"""A UBJSON array of objects that all share one shape, read by column with NumPy.

A model's trees are thousands of objects with the same keys in the same order, each
value a typed array, a small integer or a short string. Walking them key by key in
Python costs as much as XGBoost's whole load. Here the first object (already checked
by the plain parser) gives the shape: a list of steps, each a run of literal bytes
(``{``, keys, array headers) or a field whose size is read from the bytes (a typed
array's count, an integer's marker, a string's length). Every object of the array is
then walked at once, one NumPy operation per step over all of them.

Objects start where the one before ends, which is only known after walking it, so
the starts are guessed first: every place the shape's first literal bytes occur
(keys and ``{``: they cannot occur by accident, and one planted inside a number
array is caught next). The walk must then chain: the first object starts where the
array does, and each ends exactly where the next begins. Anything else (a different
shape, a bad length, a planted start) returns None and the plain parser reads the
array, with its exact error message if there is one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from modelyard.handlers.structure.values import Bytes, NumberArray

__all__ = ["Column", "Table", "read_table"]

#: UBJSON strongly typed array markers and the numpy dtype of their values
TYPED = {
    ord("i"): ">i1",
    ord("U"): ">u1",
    ord("I"): ">i2",
    ord("l"): ">i4",
    ord("L"): ">i8",
    ord("d"): ">f4",
    ord("D"): ">f8",
}
_INTEGERS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}
_INTEGER_WIDTHS = np.zeros(256, dtype=np.int64)
for _marker, _fmt in _INTEGERS.items():
    _INTEGER_WIDTHS[_marker] = struct.calcsize(_fmt)
_INT64 = struct.Struct(">q")


@dataclass(frozen=True)
class Column:
    """One field of every row: where its payload starts and how long it is.

    ``kind`` is ``typed`` (``counts`` items of ``dtype``), ``int`` (``counts`` holds
    the integer's marker byte) or ``str`` (``counts`` bytes of UTF-8).
    """

    kind: str
    starts: np.ndarray
    counts: np.ndarray
    dtype: str = ""


class Table(Sequence[dict[str, Any]]):
    """The objects of one array, by column; indexing one builds it as a dict."""

    def __init__(self, data: Bytes, rows: int, columns: dict[tuple[str, ...], Column]) -> None:
        self.data = data
        self.rows = rows
        self.columns = columns

    def __len__(self) -> int:
        return self.rows

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.rows))]
        if not -self.rows <= index < self.rows:
            raise IndexError(index)
        row: dict[str, Any] = {}
        for path, column in self.columns.items():
            node = row
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = self.value(column, index % self.rows)
        return row

    def value(self, column: Column, row: int) -> Any:
        """The value of ``column`` in ``row``, as the plain parser would give it."""
        start, count = int(column.starts[row]), int(column.counts[row])
        if column.kind == "typed":
            return NumberArray(self.data, start, start + count * int(column.dtype[-1]), count, column.dtype)
        if column.kind == "int":
            return struct.unpack_from(_INTEGERS[count], self.data, start)[0]
        return self.data[start : start + count].decode("utf-8", "surrogateescape")


# a step: literal bytes, or a field: (kind, path, dtype) with kind "typed", "int" or "str"
_Step = bytes | tuple[str, tuple[str, ...], str]


def read_table(data: Bytes, start: int, rows: int, first_end: int) -> tuple[Table, int] | None:
    """The ``rows`` objects from ``start`` (the first, checked, ends at ``first_end``) and where they end."""
    steps = _shape(data, start, first_end)
    if steps is None or not isinstance(steps[0], bytes):
        return None
    starts = _candidates(data, start, rows, steps[0])
    if starts is None:
        return None
    walked = _walk(data, starts, steps)
    if walked is None:
        return None
    ends, columns = walked
    if int(ends[0]) != first_end or not np.array_equal(ends[:-1], starts[1:]):
        return None
    return Table(data, rows, columns), int(ends[-1])


def _shape(data: Bytes, at: int, end: int) -> list[_Step] | None:
    """The steps of the (already checked) object at ``at``, or None when a value is of a kind not handled here."""
    steps: list[_Step] = []
    literal = bytearray()

    def field(kind: str, path: tuple[str, ...], dtype: str = "") -> None:
        nonlocal literal
        steps.append(bytes(literal))
        steps.append((kind, path, dtype))
        literal = bytearray()

    def walk(at: int, path: tuple[str, ...]) -> int | None:
        literal.append(data[at])  # {
        at += 1
        while data[at] != 0x7D:  # }
            n = _INT64.unpack_from(data, at + 1)[0]
            key = data[at + 9 : at + 9 + n].decode("utf-8", "surrogateescape")
            literal.extend(data[at : at + 9 + n])
            at += 9 + n
            marker = data[at]
            if marker == 0x5B and data[at + 1] == 0x24:  # [$<type>#L<n>
                dtype = TYPED[data[at + 2]]
                literal.extend(data[at : at + 5])
                field("typed", (*path, key), dtype)
                at += 13 + _INT64.unpack_from(data, at + 5)[0] * int(dtype[-1])
            elif marker in _INTEGERS:
                field("int", (*path, key))
                at += 1 + int(_INTEGER_WIDTHS[marker])
            elif marker == 0x53:  # SL<n>
                literal.extend(b"SL")
                field("str", (*path, key))
                at += 10 + _INT64.unpack_from(data, at + 2)[0]
            elif marker == 0x7B:  # {
                nested = walk(at, (*path, key))
                if nested is None:
                    return None
                at = nested
            else:  # floats, nulls, booleans, plain arrays: not in a tree; the plain parser reads them
                return None
        literal.append(0x7D)
        return at + 1

    if walk(at, ()) != end:
        return None
    steps.append(bytes(literal))
    return [s for s in steps if s != b""]


def _candidates(data: Bytes, start: int, rows: int, head: bytes) -> np.ndarray | None:
    """The first ``rows`` places ``head`` occurs from ``start`` on (start first), or None."""
    found = [start]
    at = start
    while len(found) < rows:
        at = data.find(head, at + 1)
        if at < 0:
            return None
        found.append(at)
    return np.array(found, dtype=np.int64) if data.startswith(head, start) else None


def _walk(
    data: Bytes, starts: np.ndarray, steps: list[_Step]
) -> tuple[np.ndarray, dict[tuple[str, ...], Column]] | None:
    """Every step applied to every row at once; None when one row does not follow the shape."""
    raw = np.frombuffer(data, dtype=np.uint8)
    size = len(data)
    at = starts.copy()
    windows: dict[int, np.ndarray] = {}  # strided views: row i of windows[w] is raw[i : i + w], no copy

    def window(width: int) -> np.ndarray:
        if width not in windows:
            windows[width] = np.lib.stride_tricks.sliding_window_view(raw, width)
        return windows[width]

    columns: dict[tuple[str, ...], Column] = {}
    for step in steps:
        if isinstance(step, bytes):
            width = len(step)
            if int(at.max()) + width > size:
                return None
            if not (window(width)[at] == np.frombuffer(step, dtype=np.uint8)).all():
                return None
            at = at + width
            continue
        kind, path, dtype = step
        if kind == "int":
            if int(at.max()) >= size:
                return None
            markers = raw[at].astype(np.int64)
            widths = _INTEGER_WIDTHS[markers]
            if not widths.all():
                return None
            columns[path] = Column("int", at + 1, markers)
            at = at + 1 + widths
            continue
        if int(at.max()) + 8 > size:
            return None
        counts = window(8)[at].view(">i8").ravel().astype(np.int64)
        width = int(dtype[-1]) if kind == "typed" else 1
        payload = at + 8
        if (counts < 0).any() or (counts > (size - payload) // width).any():
            return None
        columns[path] = Column(kind, payload, counts, dtype)
        at = payload + counts * width
    return at, columns

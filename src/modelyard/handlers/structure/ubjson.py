"""UBJSON checked and decoded in one pass, as XGBoost writes and reads it.

XGBoost's reader recurses into every container and trusts every length: a string,
key or typed array claiming more bytes than the file holds is read past its end, an
array claiming a billion items makes it allocate a billion values. This parser
accepts what that reader accepts and refuses the rest with the reason:

* values: ``{`` ``[`` ``Z`` ``T`` ``F`` ``S`` and the numbers ``i U I l L C d D``;
* object keys and strings: ``L`` then an int64 length (XGBoost reads no other);
* arrays: ``[...]``, counted ``[#L<n>``, typed ``[$<t>#L<n>`` with ``t`` in ``i U I l L d D``;
* every length and count fits in the bytes after it; nesting at most ``max_depth``;
  keys unique in each object (XGBoost keeps the first of two, others the last);
  no bytes after the document.

Typed arrays are skipped in one jump and come back as
:class:`~modelyard.handlers.structure.values.NumberArray`. A counted array of
objects of one shape (a model's trees) is read by column
(:mod:`~modelyard.handlers.structure.ubjtable`).
"""

from __future__ import annotations

import struct
from typing import Any

from modelyard.handlers.structure.ubjtable import TYPED as _TYPED
from modelyard.handlers.structure.ubjtable import read_table
from modelyard.handlers.structure.values import MAX_DEPTH, Bytes, NumberArray, StructureError, collector_paused

__all__ = ["parse_ubjson"]

_SCALARS = {
    ord(marker): struct.Struct(fmt)
    for marker, fmt in (
        ("i", ">b"),
        ("U", ">B"),
        ("C", ">b"),
        ("I", ">h"),
        ("l", ">i"),
        ("L", ">q"),
        ("d", ">f"),
        ("D", ">d"),
    )
}
_WIDTHS = {dtype: int(dtype[-1]) for dtype in _TYPED.values()}
_INT64 = struct.Struct(">q")
_TABLE_ROWS = 16  # below this many objects, reading by column saves nothing


def parse_ubjson(data: Bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Check and decode a UBJSON document (see module doc)."""
    with collector_paused():
        value, end = _Parser(data, max_depth).value(0, 0)
    if end != len(data):
        raise StructureError(f"{len(data) - end} bytes follow the end of the document")
    return value


class _Parser:
    """One pass; positions are passed along and returned, never stored.

    An object's keys and typed arrays, the hot path of a model of many trees, are
    read inline rather than through :meth:`value`.
    """

    def __init__(self, data: Bytes, max_depth: int) -> None:
        self.data = data
        self.size = len(data)
        self.max_depth = max_depth

    def _truncated(self, at: int) -> StructureError:
        return StructureError(f"it ends in the middle of a value (byte {at} of {self.size})")

    def _deep(self, at: int) -> StructureError:
        return StructureError(f"it nests deeper than {self.max_depth} levels (at byte {at})")

    def _length(self, at: int, what: str) -> tuple[int, int]:
        """The int64 after the ``L`` at ``at``, and the position after it; it must fit in the bytes left."""
        data, size = self.data, self.size
        if at + 9 > size:
            raise self._truncated(at)
        if data[at] != 0x4C:  # L
            raise StructureError(f"the {what} at byte {at} is not an int64 (L) length")
        n: int = _INT64.unpack_from(data, at + 1)[0]
        if not 0 <= n <= size - at - 9:
            raise StructureError(f"the {what} at byte {at} is {n}, with {size - at - 9} bytes left")
        return n, at + 9

    def value(self, at: int, depth: int) -> tuple[Any, int]:
        """The value starting at ``at`` and the position after it."""
        data = self.data
        if at >= self.size:
            raise self._truncated(at)
        marker = data[at]
        at += 1
        if marker == 0x7B:  # {
            return self.object(at, depth + 1)
        if marker == 0x5B:  # [
            return self.array(at, depth + 1)
        scalar = _SCALARS.get(marker)
        if scalar is not None:
            if at + scalar.size > self.size:
                raise self._truncated(at)
            return scalar.unpack_from(data, at)[0], at + scalar.size
        if marker == 0x53:  # S
            n, at = self._length(at, "string length")
            return data[at : at + n].decode("utf-8", "surrogateescape"), at + n
        if marker == 0x5A:  # Z
            return None, at
        if marker in (0x54, 0x46):  # T, F
            return marker == 0x54, at
        raise StructureError(f"unknown marker {bytes([marker])!r} at byte {at - 1}")

    def typed(self, at: int) -> tuple[NumberArray, int]:
        """A typed array after its ``[$``: ``<type>#L<n>`` then n items, skipped in one jump."""
        data = self.data
        if at + 2 > self.size:
            raise self._truncated(at)
        dtype = _TYPED.get(data[at])
        if dtype is None:
            raise StructureError(f"unknown typed array element {bytes([data[at]])!r} at byte {at}")
        if data[at + 1] != 0x23:  # #
            raise StructureError(f"the typed array at byte {at - 2} has no count")
        n, start = self._length(at + 2, "array count")
        width = _WIDTHS[dtype]
        if n > (self.size - start) // width:
            raise StructureError(
                f"the array at byte {at - 2} claims {n} items of {width} bytes, {self.size - start} are left"
            )
        return NumberArray(data, start, start + n * width, n, dtype), start + n * width

    def object(self, at: int, depth: int) -> tuple[dict[str, Any], int]:
        if depth > self.max_depth:
            raise self._deep(at - 1)
        data, size, unpack, value = self.data, self.size, _INT64.unpack_from, self.value
        out: dict[str, Any] = {}
        while True:
            if at >= size:
                raise self._truncated(at)
            marker = data[at]
            if marker == 0x7D:  # }
                return out, at + 1
            if marker != 0x4C or at + 9 > size:  # keys are L<int64 length><bytes>, nothing else
                raise StructureError(f"the key at byte {at} is not a string with an int64 (L) length")
            n: int = unpack(data, at + 1)[0]
            at += 9
            if not 0 <= n <= size - at:
                raise StructureError(f"the key at byte {at - 9} claims {n} bytes, {size - at} are left")
            key = data[at : at + n].decode("utf-8", "surrogateescape")
            at += n
            if key in out:
                raise StructureError(f"an object has the key {key!r} twice")
            # the usual value, a typed array [$<type>#L<n>, read inline (the slow path says what is wrong)
            if (
                at + 13 <= size
                and data[at] == 0x5B  # [
                and data[at + 1] == 0x24  # $
                and data[at + 3] == 0x23  # #
                and data[at + 4] == 0x4C  # L
                and depth < self.max_depth
            ):
                dtype = _TYPED.get(data[at + 2])
                if dtype is not None:
                    count: int = unpack(data, at + 5)[0]
                    start = at + 13
                    end = start + count * _WIDTHS[dtype]
                    if count >= 0 and end <= size:
                        out[key] = NumberArray(data, start, end, count, dtype)
                        at = end
                        continue
            out[key], at = value(at, depth)

    def array(self, at: int, depth: int) -> tuple[Any, int]:
        if depth > self.max_depth:
            raise self._deep(at - 1)
        data = self.data
        if at >= self.size:
            raise self._truncated(at)
        if data[at] == 0x24:  # $
            return self.typed(at + 1)
        items: list[Any] = []
        if data[at] == 0x23:  # #: [#L<n> then n values, each a byte at least
            n, at = self._length(at + 1, "array count")
            if n >= _TABLE_ROWS and data[at : at + 1] == b"{":
                first, end = self.value(at, depth)
                table = read_table(data, at, n, end)
                if table is not None:
                    return table
                items.append(first)
                n, at = n - 1, end
            scalars, size, value = _SCALARS, self.size, self.value
            for _ in range(n):
                scalar = scalars.get(data[at]) if at < size else None
                if scalar is not None and at + 1 + scalar.size <= size:  # numbers inline: indptr, tree_info
                    items.append(scalar.unpack_from(data, at + 1)[0])
                    at += 1 + scalar.size
                else:
                    item, at = value(at, depth)
                    items.append(item)
            return items, at
        while True:
            if at >= self.size:
                raise self._truncated(at)
            if data[at] == 0x5D:  # ]
                return items, at + 1
            item, at = self.value(at, depth)
            items.append(item)

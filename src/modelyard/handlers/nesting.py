"""How deep a JSON or UBJSON document nests, found without parsing it into objects.

XGBoost parses a model file recursively, in C++: a file nested some 30,000 deep
overflows the loading thread's stack and ends the whole process. A real model nests
about six deep, so a handler refuses a document nesting deeper than
:data:`MAX_DEPTH` before the framework sees it. A document opening no more
containers than that cannot nest deeper, which is what small models do (one count
of bytes); larger ones are scanned: JSON with numpy, a block at a time, strings and
escapes honoured; UBJSON token by token, with fixed-size typed arrays (where a
model's numbers are) skipped whole.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["MAX_DEPTH", "too_deep"]

#: deepest nesting accepted; XGBoost models nest about 6 deep and survive ~20,000
MAX_DEPTH = 1000
_BLOCK = 256 * 1024
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))
_SIZES = {ord(m): s for m, s in zip("ZNTFiUCIldLD", (0, 0, 0, 0, 1, 1, 1, 2, 4, 4, 8, 8), strict=True)}
_INTS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}


class _Malformed(Exception):
    pass


def too_deep(data: bytes | bytearray, limit: int = MAX_DEPTH) -> bool:
    """Whether an XGBoost model document nests deeper than ``limit``.

    The format is told apart as XGBoost does: ``{``, then (after any blanks) ``"``
    for JSON or a letter for UBJSON; anything else XGBoost refuses by itself. UBJSON
    that cannot be walked counts as too deep: what is not read here is not parsed there.
    """
    # "[" is 0x5B and "{" 0x7B: the only bytes that become 0x7B once bit 0x20 is set
    if np.count_nonzero((np.frombuffer(data, dtype=np.uint8) | 0x20) == 0x7B) <= limit:
        return False
    kind = _format(data)
    if kind == "json":
        return _json_deeper(data, limit)
    if kind == "ubjson":
        try:
            return _ubjson_deeper(data, limit)
        except (_Malformed, struct.error, IndexError):
            return True
    return False


def _format(data: bytes | bytearray) -> str | None:
    if data[:1] != b"{":
        return None
    rest = bytes(data[1:64]).lstrip(b" \t\r\n")
    if rest[:1] == b'"':
        return "json"
    if rest[:1].isalpha():
        return "ubjson"
    return None


def _json_deeper(data: bytes | bytearray, limit: int) -> bool:
    """JSON nesting, a block at a time: brackets inside strings do not count; ``\\"`` does not end one."""
    view = np.frombuffer(data, dtype=np.uint8)
    depth, inside, run = 0, 0, 0  # carried across blocks: nesting, within a string, backslashes just before
    for start in range(0, len(view), _BLOCK):
        block = view[start : start + _BLOCK]
        index = np.arange(len(block))
        slash = block == ord("\\")
        last = np.maximum.accumulate(np.where(slash, -1 - run, index))  # the last byte that is no backslash
        before = np.empty(len(block), dtype=np.int64)  # backslashes right before each byte
        before[0] = run
        before[1:] = index[:-1] - last[:-1]
        quotes = (block == ord('"')) & (before % 2 == 0)
        within = (inside + np.cumsum(quotes)) % 2
        step = np.isin(block, _OPEN).astype(np.int64) - np.isin(block, _CLOSE)
        step[within == 1] = 0
        levels = depth + np.cumsum(step)
        if int(levels.max()) > limit:
            return True
        depth, inside, run = int(levels[-1]), int(within[-1]), int(len(block) - 1 - last[-1])
    return False


def _ubjson_deeper(data: bytes | bytearray, limit: int) -> bool:
    """UBJSON nesting, token by token (raises :class:`_Malformed` on what is not UBJSON)."""
    size = len(data)
    pos = 0

    def integer() -> int:
        nonlocal pos
        form = _INTS.get(data[pos])
        if form is None:
            raise _Malformed
        width = struct.calcsize(form)
        (value,) = struct.unpack_from(form, data, pos + 1)
        pos += 1 + width
        if value < 0:
            raise _Malformed
        return int(value)

    frames: list[list[int]] = []  # [is an object, elements left (-1: until its end marker), element type]
    while True:
        if frames:
            frame = frames[-1]
            if frame[1] == 0:
                frames.pop()
                if not frames:
                    return False
                continue
            if frame[1] < 0:
                if data[pos] == (ord("}") if frame[0] else ord("]")):
                    pos += 1
                    frames.pop()
                    if not frames:
                        return False
                    continue
            else:
                frame[1] -= 1
            if frame[0]:
                length = integer()  # a key: its length, then its bytes
                pos += length
            if frame[2]:
                marker = frame[2]
            else:
                marker = data[pos]
                pos += 1
        else:
            marker = data[pos]
            pos += 1
        if marker in _SIZES:
            pos += _SIZES[marker]
        elif marker in (ord("S"), ord("H")):
            length = integer()
            pos += length
        elif marker in _OPEN:
            if len(frames) + 1 > limit:
                return True
            typed, count = 0, -1
            if data[pos] == ord("$"):
                typed = data[pos + 1]
                pos += 2
                if data[pos] != ord("#"):
                    raise _Malformed
            if data[pos] == ord("#"):
                pos += 1
                count = integer()
            if typed in _SIZES and marker == ord("["):
                pos += count * _SIZES[typed]  # numbers only: nothing nests inside
            else:
                frames.append([int(marker == ord("{")), count, typed])
        else:
            raise _Malformed
        if pos > size:
            raise _Malformed
        if not frames:
            return False

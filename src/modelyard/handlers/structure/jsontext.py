"""JSON text checked in one vectorised pass, then parsed with its number arrays left as bytes.

The bytes that shape a document (brackets, braces, quotes, backslashes) are found
with one ``bytes.translate`` and a NumPy scan; quotes preceded by an odd run of
backslashes are escaped; a bracket is inside a string when an odd number of real
quotes precede it. What is left gives the nesting depth at every bracket.

The document is then parsed by :func:`json.loads` with every flat array (one that
holds no string and no bracket: the numbers that are nearly all of a model) replaced
by a numbered placeholder, so only the skeleton becomes Python objects. Keys must be
unique in each object: parsers disagree on which of two equal keys wins.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelyard.handlers.structure.values import MAX_DEPTH, Bytes, NumberArray, StructureError, collector_paused

__all__ = ["parse_json"]

_OPEN, _CLOSE, _QUOTE, _BACKSLASH = 1, 2, 3, 4
_CLASSES = bytearray(256)
for _byte, _class in (
    (b"[", _OPEN),
    (b"{", _OPEN),
    (b"]", _CLOSE),
    (b"}", _CLOSE),
    (b'"', _QUOTE),
    (b"\\", _BACKSLASH),
):
    _CLASSES[_byte[0]] = _class
_CLASS_TABLE = bytes(_CLASSES)
# a flat array stands in the skeleton as this float literal, numbered; json.loads hands it to parse_float
_PLACEHOLDER = "-0.0e-00"


def parse_json(data: Bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Check a JSON document's shape, then parse it with its flat arrays as :class:`NumberArray`."""
    kinds = np.frombuffer(data.translate(_CLASS_TABLE), dtype=np.uint8)
    positions = np.flatnonzero(kinds.view(np.bool_))  # a bool view: 10 times faster than on uint8
    kinds = kinds[positions]
    quotes = kinds == _QUOTE
    if (kinds == _BACKSLASH).any():
        quotes &= ~_escaped(data, positions, quotes)
    if int(quotes.sum()) % 2:
        raise StructureError("a string is not terminated")
    brackets = (kinds == _OPEN) | (kinds == _CLOSE)
    outside = (np.cumsum(quotes) - quotes) % 2 == 0
    keep = quotes | (brackets & outside)
    positions, kinds = positions[keep], kinds[keep]
    brackets = kinds != _QUOTE
    depth = np.cumsum(np.where(kinds[brackets] == _OPEN, 1, -1))
    if not len(depth):
        raise StructureError("it is not a JSON object")
    _check_depth(depth, positions[brackets], max_depth)
    with collector_paused():
        return _parse_skeleton(data, positions, kinds)


def _escaped(data: Bytes, positions: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Which quote marks are escaped: preceded by an odd run of backslashes (rare: looped)."""
    escaped = np.zeros(len(positions), dtype=np.bool_)
    raw = np.frombuffer(data, dtype=np.uint8)
    candidates = np.flatnonzero(quotes & (positions > 0))
    candidates = candidates[raw[positions[candidates] - 1] == ord("\\")]
    for i in candidates.tolist():
        at = int(positions[i]) - 1
        run = 0
        while at >= 0 and data[at] == ord("\\"):
            run += 1
            at -= 1
        escaped[i] = run % 2 == 1
    return escaped


def _check_depth(depth: np.ndarray, where: np.ndarray, max_depth: int) -> None:
    if int(depth.max()) > max_depth:
        at = int(where[int(np.argmax(depth > max_depth))])
        raise StructureError(f"it nests deeper than {max_depth} levels (at byte {at})")
    if int(depth.min()) < 0:
        at = int(where[int(np.argmax(depth < 0))])
        raise StructureError(f"the bracket at byte {at} closes nothing")
    if int(depth[-1]) != 0:
        raise StructureError("it ends before its brackets close (truncated?)")


def _parse_skeleton(data: Bytes, positions: np.ndarray, kinds: np.ndarray) -> Any:
    flat = np.flatnonzero((kinds[:-1] == _OPEN) & (kinds[1:] == _CLOSE))
    raw = np.frombuffer(data, dtype=np.uint8)
    # arrays only (not empty objects), closed by ']': a mismatched pair stays for json.loads to refuse
    flat = flat[(raw[positions[flat]] == ord("[")) & (raw[positions[flat + 1]] == ord("]"))]
    pieces: list[Bytes] = []
    arrays: list[NumberArray] = []
    last = 0
    for index, (start, end) in enumerate(zip(positions[flat].tolist(), positions[flat + 1].tolist(), strict=True)):
        pieces.append(data[last:start])
        pieces.append(f"{_PLACEHOLDER}{index}".encode())
        count = data.count(b",", start, end) + 1
        if count == 1 and not data[start + 1 : end].strip():
            count = 0
        arrays.append(NumberArray(data, start + 1, end, count))
        last = end + 1
    pieces.append(data[last:])
    seen = bytearray(len(arrays))

    def number(text: str) -> Any:
        if not text.startswith(_PLACEHOLDER):
            return float(text)
        index = int(text[len(_PLACEHOLDER) :])
        if index >= len(arrays) or seen[index]:  # the document itself holds such a literal
            raise StructureError("it is not valid JSON")
        seen[index] = 1
        return arrays[index]

    try:
        document = json.loads(b"".join(pieces), parse_float=number, object_pairs_hook=_unique_keys)
    except StructureError:
        raise
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise StructureError(f"it is not valid JSON ({exc})") from None
    if not all(seen):
        raise StructureError("it is not valid JSON")
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StructureError(f"an object has the key {key!r} twice")
            seen.add(key)
    return out

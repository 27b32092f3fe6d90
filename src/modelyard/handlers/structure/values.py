"""What the parsers hand back besides plain Python values, and the error they raise."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "Bytes", "NumberArray", "StructureError", "collector_paused", "stack_integers"]

#: deepest nesting accepted; real models nest fewer than 10 levels
MAX_DEPTH = 64

#: a document: a handler may read a file straight into a bytearray
Bytes = bytes | bytearray


class StructureError(ValueError):
    """The document is malformed, or shaped to harm the native parser that would read it."""


class NumberArray:
    """A flat array of numbers inside a parsed document, decoded only on demand.

    ``len()`` is free; :meth:`integers` decodes it, refusing anything but integers.
    ``dtype`` is the big-endian NumPy type of a UBJSON typed array, None for JSON text.
    """

    __slots__ = ("count", "data", "dtype", "end", "start")

    def __init__(self, data: Bytes, start: int, end: int, count: int, dtype: str | None = None) -> None:
        self.data = data
        self.start = start
        self.end = end
        self.count = count
        self.dtype = dtype

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"NumberArray({self.dtype or 'json'}, {self.count} items)"

    def integers(self) -> np.ndarray:
        """The values as int64; a StructureError when one is not an integer."""
        return stack_integers([self])[0]


def stack_integers(arrays: Sequence[NumberArray | list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """All ``arrays`` decoded as integers and concatenated, with each one's length.

    Decoding many small arrays one by one would cost more than the native load: runs
    of JSON text are joined and parsed in one call, runs of UBJSON typed arrays of
    one type are read in one go. A value that is not an integer (a float, NaN,
    ``true``) is a StructureError.
    """
    lengths = np.array([a.count if type(a) is NumberArray else len(a) for a in arrays], dtype=np.int64)
    parts: list[np.ndarray] = []
    run: list[NumberArray | list[Any]] = []
    run_kind = ""
    for array, length in zip(arrays, lengths.tolist(), strict=True):
        if not length:
            continue
        kind = (array.dtype or "text") if isinstance(array, NumberArray) else "list"
        if kind != run_kind and run:
            parts.append(_decode_run(run, run_kind))
            run = []
        run_kind = kind
        run.append(array)
    if run:
        parts.append(_decode_run(run, run_kind))
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(values) != int(lengths.sum()):
        raise StructureError("an array of integers holds something else")
    return values, lengths


def _decode_run(run: list[NumberArray | list[Any]], kind: str) -> np.ndarray:
    if kind == "list":
        return _python_integers([v for items in run if isinstance(items, list) for v in items])
    chunks = [a.data[a.start : a.end] for a in run if isinstance(a, NumberArray)]
    if kind == "text":
        return text_integers(b",".join(chunks))
    return typed_integers(b"".join(chunks), kind)


def text_integers(text: bytes) -> np.ndarray:
    """Comma-separated JSON numbers as int64 (fewer values come back when one is not a number)."""
    try:
        values = np.fromstring(text, dtype=np.float64, sep=",")  # C speed; stops at the first non-number
    except (ValueError, DeprecationWarning) as exc:  # DeprecationWarning: when warnings are errors
        raise StructureError("an array of integers holds something else") from exc
    return _checked_integers(values)


def typed_integers(chunk: Bytes, dtype: str) -> np.ndarray:
    """A UBJSON typed array's bytes as int64."""
    values = np.frombuffer(chunk, dtype=dtype)
    if dtype[1] == "f":
        return _checked_integers(values.astype(np.float64))
    return values.astype(np.int64)


def _checked_integers(values: np.ndarray) -> np.ndarray:
    # exact integers only: 2.5, NaN or 1e300 would not mean what a range check thinks
    if not (np.isfinite(values).all() and (values == np.trunc(values)).all() and (np.abs(values) < 2.0**53).all()):
        raise StructureError("an array of integers holds a value that is not an integer")
    return values.astype(np.int64)


def _python_integers(items: list[Any]) -> np.ndarray:
    if not all(type(v) is int and -(2**63) <= v < 2**63 for v in items):
        raise StructureError("an array of integers holds a value that is not an integer")
    return np.array(items, dtype=np.int64)


class _CollectorPause:
    """Pauses the cyclic garbage collector while documents are built, process-wide.

    A model of thousands of trees builds hundreds of thousands of containers; each
    batch of them triggers a collection that walks every object of the process, which
    tripled the parse time of a 100 MB model. Nested and concurrent pauses are
    counted: the collector resumes, if it ran before, when the last one ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._was_enabled = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._active:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if not self._active and self._was_enabled:
                    gc.enable()


#: ``with collector_paused(): ...`` (see :class:`_CollectorPause`)
collector_paused = _CollectorPause()

"""The part of a model's memory the C heap measurement cannot see: small Python objects.

:func:`modelyard.sizing.measure` counts the growth of glibc's heap. Python objects
of up to 512 bytes do not come from that heap: pymalloc carves them out of its own
arenas, mapped straight from the kernel. A model made of Python objects (a
scikit-learn pipeline, a vocabulary dict, whatever ``model_fn`` returns) would look
nearly free. Handlers that build such models set ``Handler.python_objects`` and
their loads are traced with :mod:`tracemalloc` as well, counting only the small
blocks that the heap measurement misses (larger ones and NumPy's buffers are
malloc'd and already counted).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import TypeVar

__all__ = ["SMALL_OBJECT_LIMIT", "small_python_objects"]

T = TypeVar("T")

#: pymalloc serves requests up to this many bytes; larger ones go to malloc
SMALL_OBJECT_LIMIT = 512
_RAW_DOMAIN = 0  # Python's own allocators; NumPy traces its buffers in another domain


def small_python_objects(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn``; return its result and the bytes of small Python objects it left allocated.

    Sizes are rounded up to pymalloc's 16-byte size classes. When something else is
    already tracing (``python -X tracemalloc``) the count is 0: stopping the tracer
    would break it, and its older traces cannot be told apart from the load's.
    """
    if tracemalloc.is_tracing():
        return fn(), 0
    tracemalloc.start(1)
    try:
        result = fn()
        traces = tracemalloc.take_snapshot().traces
        small = sum(
            (trace.size + 15) & ~15
            for trace in traces
            if trace.domain == _RAW_DOMAIN and trace.size <= SMALL_OBJECT_LIMIT
        )
        del traces  # freed before the caller reads the heap again
    finally:
        tracemalloc.stop()
    return result, small

"""Measuring how much memory a model really takes.

Framework models live mostly in native memory that ``sys.getsizeof`` and tracemalloc
cannot see, and a file's size says little about its size once loaded. So a load is
measured as the growth of the C heap (glibc ``mallinfo2``: bytes in use, mmapped
blocks included) across it, one measured load at a time. Where ``mallinfo2`` is not
available the resident set size is used instead.

Freeing memory inside a measuring window would be subtracted from the model being
measured, so frees of evicted models go through :func:`freeing`: a free waits for
the measurement under way, and a measurement waits for the frees already asked for.
Frees never wait behind a stream of loads, so memory comes back however busy the
cache is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

__all__ = ["freeing", "heap_in_use", "limit_arenas", "measure", "measuring", "rss_bytes"]

T = TypeVar("T")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _Gate:
    """One measurement at a time, and no free inside one; frees asked for go first."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._measuring = False
        self._frees = 0  # frees waiting or running

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._measuring and not self._frees)
            self._measuring = True
        try:
            yield
        finally:
            with self._changed:
                self._measuring = False
                self._changed.notify_all()

    @contextlib.contextmanager
    def freeing(self) -> Iterator[None]:
        with self._changed:
            self._frees += 1
            self._changed.wait_for(lambda: not self._measuring)
        try:
            yield
        finally:
            with self._changed:
                self._frees -= 1
                self._changed.notify_all()


_gate = _Gate()


def measuring() -> contextlib.AbstractContextManager[None]:
    """Hold a measuring window: no other measurement and no :func:`freeing` block runs meanwhile."""
    return _gate.measuring()


def freeing() -> contextlib.AbstractContextManager[None]:
    """Free memory outside every measuring window (blocks while one is open; the next one waits for it)."""
    return _gate.freeing()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _load_mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


_mallinfo2 = _load_mallinfo2()


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (``M_ARENA_MAX``); False where mallopt is not available.

    Every thread that allocates while others do gets an arena of its own by default
    (up to 8 per core), each keeping freed memory for itself: with a load thread, an
    event loop and the object store's I/O threads, a churning cache then holds tens of
    MiB of free pages that no budget sees. Two arenas keep that overhead small.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, count))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def rss_bytes() -> int:
    """The process's resident set size in bytes (0 where /proc is not available)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def heap_in_use() -> int:
    """Bytes the C allocator has handed out and not taken back (RSS as a fallback)."""
    if _mallinfo2 is None:
        return rss_bytes()
    info = _mallinfo2()
    return int(info.uordblks + info.hblkhd)


def measure(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` and return its result with the bytes of memory it left allocated.

    Measurements are serialised so that two loads do not count each other's memory,
    frees wait outside (:func:`freeing`), and the garbage collector is held off
    meanwhile: a collection inside the window frees unrelated memory and would be
    subtracted from the model.
    """
    with measuring():
        collecting = gc.isenabled()
        gc.disable()
        try:
            before = heap_in_use()
            result = fn()
            grown = heap_in_use() - before
        finally:
            if collecting:
                gc.enable()
    return result, max(grown, 0)

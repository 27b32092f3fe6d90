"""Threads with a large stack, for model loads.

Native model loaders parse by recursion, and a thread's stack is all that stands
between a deeply nested file and the end of the process: XGBoost 3.2 overflows an
8 MiB stack (glibc's default for threads) at 35,170 nested JSON arrays or 19,549
UBJSON ones. The parsers of :mod:`modelyard.handlers.structure` refuse anything
nested deeper than 64 levels first; the large stack is for native recursion they do
not foresee. With :data:`LOAD_STACK_SIZE` the same loader survives 1,110,097 JSON
and 618,032 UBJSON levels. It costs address space, not memory: the kernel backs only
the pages a recursion touches.

``threading.stack_size`` applies, process-wide, to threads started after it is set,
so :class:`LoadExecutor` sets it only while it starts its own threads, under a lock,
and puts the previous size back.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["LOAD_STACK_SIZE", "LoadExecutor"]

#: stack of each load thread (bytes)
LOAD_STACK_SIZE = 256 << 20

_stack_lock = threading.Lock()


class LoadExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose threads get a ``stack_size`` stack (see module doc)."""

    def __init__(self, max_workers: int, *, thread_name_prefix: str = "", stack_size: int = LOAD_STACK_SIZE) -> None:
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.stack_size = stack_size

    def _adjust_thread_count(self) -> None:
        # threads start lazily, here, on the first submits: the size is set around that only
        with _stack_lock:
            try:
                previous = threading.stack_size(self.stack_size)
            except (ValueError, RuntimeError):  # a platform that cannot: default stacks
                super()._adjust_thread_count()
                return
            try:
                super()._adjust_thread_count()
            finally:
                threading.stack_size(previous)

"""How the ``modelyard`` process ends: never in a native crash.

obstore drives its I/O on tokio worker threads, and each finished call hands its
result to the asyncio loop from such a thread (``loop.call_soon_threadsafe``, whose
write to the loop's wake-up socket runs with the GIL released). When the command is
done just as one of those threads is in that window, the main thread goes on into
interpreter finalization; the worker then asks for the GIL back, CPython ends it with
``pthread_exit``, and the forced unwind through Rust frames that cannot unwind aborts
the process (``Aborted``, exit 134; sometimes ``Bus error`` or a segfault).

So the console script ends the process itself once everything that should run at
exit has run: Python's non-daemon threads are joined, every ``atexit`` handler the
command registered runs, the standard streams and logging are flushed, then
``os._exit`` with the command's status, before finalization could kill a native
thread. Nothing that matters is skipped: finalization would only free memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Any

import click

__all__ = ["exit_status", "run_guarded"]


def exit_status(code: Any) -> int:
    """The process status Python gives ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1  # a message: Python prints it and exits with 1


def _flush_and_exit(status: list[int]) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    logging.shutdown()
    os._exit(status[0])


def run_guarded(command: click.Command) -> None:
    """Run ``command`` as the program and end the process as described in the module docstring."""
    status = [1]  # an exception escaping click (it handles its own) exits with 1, as Python would
    # registered before the command runs, so it runs after every handler the command registers (LIFO)
    atexit.register(_flush_and_exit, status)
    try:
        command.main()
    except SystemExit as exc:
        status[0] = exit_status(exc.code)
        raise

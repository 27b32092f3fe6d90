"""Progress of long work: a redrawn line on a terminal, plain lines in a log.

No dependency: a bar is a few characters of text. On a terminal the line is
redrawn at most ten times a second; elsewhere (CI logs, pipes) a line is printed
when the work starts, every ``every`` seconds, when the note changes if asked, and
at the end, so a log shows that work is going on without a line per item.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

_SPINNER = "|/-\\"
_WIDTH = 24


class Progress:
    """Progress of ``total`` steps (None: unknown, a spinner) under ``label``, written to ``stream``."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every: float = 5.0,
        note_lines: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._every = every
        self._note_lines = note_lines
        self._clock = clock
        self._started = clock()
        self._drawn = -1.0e9
        self._width = 0
        self._printed: tuple[int, str] | None = None  # count and note of the last plain line
        self._closed = False
        self._show(force=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the work started."""
        return self._clock() - self._started

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def update(self, done: int | None = None, *, advance: int = 1, note: str | None = None) -> None:
        """Set ``done`` (or add ``advance``) and the note shown after the count."""
        self.done = done if done is not None else self.done + advance
        changed = note is not None and note != self.note
        if note is not None:
            self.note = note
        self._show(force=changed and self._note_lines)

    def close(self, note: str | None = None) -> None:
        """Write the final state (with ``note``) on its own line."""
        if self._closed:
            return
        if note is not None:
            self.note = note
        self._closed = True
        text = self._text(final=True)
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width) + "\n")
        elif self._printed != (self.done, self.note):  # a log needs no second copy of its last line
            self._stream.write(text + "\n")
        self._stream.flush()

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done:,}" if self.done else ""
        return f"{self.done:,}/{self.total:,}"

    def _text(self, *, final: bool = False) -> str:
        parts = [self.label]
        if self._tty and not final:
            if self.total:
                filled = min(int(_WIDTH * self.done / self.total), _WIDTH)
                parts.append("[" + "#" * filled + "." * (_WIDTH - filled) + "]")
            elif self.total is None:
                parts.append(_SPINNER[int(self.elapsed * 8) % len(_SPINNER)])
        count = self._count()
        if count:
            parts.append(count)
        parts.append(f"{self.elapsed:.1f} s")
        text = " ".join(parts)
        return f"{text}  {self.note}" if self.note else text

    def _show(self, *, force: bool = False) -> None:
        if self._closed:
            return
        now = self._clock()
        if self._tty:
            if force or now - self._drawn >= 0.1:
                text = self._text()
                self._stream.write("\r" + text.ljust(self._width))
                self._width = max(self._width, len(text))
                self._stream.flush()
                self._drawn = now
        elif force or now - self._drawn >= self._every:
            self._stream.write(self._text() + "\n")
            self._stream.flush()
            self._drawn = now
            self._printed = (self.done, self.note)

    def tick(self) -> None:
        """Redraw (a spinner moves, elapsed time grows) without progress."""
        self._show()

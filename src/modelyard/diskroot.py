"""The disk cache's folder: modelyard's own, writable, and apart from the store.

A disk cache deletes entries, so it must never be pointed at a folder holding anything
else. :func:`claim` makes the folder modelyard's before anything is read or removed
in it: a folder modelyard creates, or finds empty, gets a marker file
(:data:`MARKER`); a folder with the marker is a cache from an earlier run; any other
non-empty folder is refused, as is one inside a local store or holding it. Inside its
folder the cache only ever removes what it names itself (:func:`owned`): its
hash-named entry folders and its ``.tmp-…`` download folders.

:class:`Health` remembers whether the folder could be written the last time it was
tried, and probes it again at most every few seconds, so ``/ping`` reports a
read-only or full disk, and its recovery.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from modelyard.errors import DiskUnavailable, ValidationError

__all__ = ["MARKER", "Health", "claim", "ensure_root", "owned"]

#: the file that marks a folder as a modelyard disk cache
MARKER = ".modelyard-cache"
META = ".modelyard.json"
_ENTRY = re.compile(r"[0-9a-f]{40}")
_TMP = re.compile(r"\.tmp-[0-9a-f]{40}-[0-9a-f]{8}|\.tmp-marker-[0-9a-f]{8}|\.probe-[0-9]+-[0-9a-f]{8}")
_MARKER_TEXT = json.dumps({"modelyard": "disk cache", "note": "entries in this folder are deleted by modelyard"})


def owned(name: str) -> str | None:
    """``"entry"`` or ``"tmp"`` for a name the disk cache gives what it writes; None for anything else."""
    if _ENTRY.fullmatch(name):
        return "entry"
    if _TMP.fullmatch(name):
        return "tmp"
    return None


def _overlap(root: Path, store: Path) -> bool:
    return root == store or root.is_relative_to(store) or store.is_relative_to(root)


def _earlier_cache(children: list[Path]) -> bool:
    """Whether every child is a disk cache entry (a cache made before the marker existed)."""
    return all(owned(c.name) == "tmp" or (owned(c.name) == "entry" and (c / META).is_file()) for c in children)


def claim(root: Path, store_root: Path | None = None) -> None:
    """Make ``root`` modelyard's disk cache folder, or refuse it (see module doc).

    Raises :class:`ValidationError` for a folder that is not modelyard's or overlaps
    the store, :class:`DiskUnavailable` when it cannot be created or written. The
    messages name the folder: they are for whoever configures the server.
    """
    real = Path(os.path.realpath(root))
    if store_root is not None and _overlap(real, Path(os.path.realpath(store_root))):
        raise ValidationError(
            f"The disk cache folder {root} and the store folder {store_root} overlap (one is inside the other): "
            "the disk cache deletes what it holds, so give it a folder of its own."
        )
    try:
        if real.exists() and not real.is_dir():
            raise ValidationError(f"The disk cache folder {root} is not a folder.")
        if (real / MARKER).is_file():
            probe(real)
            return
        children = list(real.iterdir()) if real.exists() else []
        if children and not _earlier_cache(children):
            shown = ", ".join(sorted(c.name for c in children)[:5])
            raise ValidationError(
                f"The disk cache folder {root} is not empty and is not a modelyard disk cache (it holds {shown}): "
                "the disk cache deletes what it holds, so give it a new or empty folder."
            )
        ensure_root(real)
        probe(real)
    except OSError as exc:
        raise DiskUnavailable(f"The disk cache folder {root} cannot be used: {exc.strerror or exc}.") from exc


def ensure_root(root: Path) -> None:
    """Create ``root`` with its marker when it is missing (or has no marker yet)."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.is_file():
        tmp = root / f".tmp-marker-{uuid.uuid4().hex[:8]}"
        tmp.write_text(_MARKER_TEXT)
        os.replace(tmp, marker)


def probe(root: Path) -> None:
    """Write and remove a small file in ``root``; raises the OSError when that fails."""
    path = root / f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.write_bytes(b"modelyard")
    finally:
        path.unlink(missing_ok=True)


class Health:
    """Whether the disk cache folder can be written (see module doc)."""

    def __init__(self, root: Path, *, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        #: seconds between probes of the folder
        self.interval = interval
        self._clock = clock
        self._problem: str | None = None
        self._checked = clock()

    def succeeded(self) -> None:
        """A write went through."""
        self._problem = None
        self._checked = self._clock()

    def failed(self, reason: str) -> None:
        """A write failed because of the disk, for ``reason`` (no host path in it)."""
        self._problem = reason
        self._checked = self._clock()

    def problem(self) -> str | None:
        """Why the folder cannot be written now, or None; probes it when the last check is old."""
        now = self._clock()
        if now - self._checked >= self.interval:
            self._checked = now
            try:
                ensure_root(self.root)
                probe(self.root)
            except OSError as exc:
                self._problem = exc.strerror or type(exc).__name__
            else:
                self._problem = None
        return self._problem

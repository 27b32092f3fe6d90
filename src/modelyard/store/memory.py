"""In-memory store (``memory://name``): a real backend, shared by name in one process."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from obstore.store import MemoryStore

__all__ = ["open_memory"]

_named: dict[str, MemoryStore] = {}
_lock = threading.Lock()


def open_memory(url: str, options: dict[str, str]) -> MemoryStore:
    """The memory store named by the URL's host; the same name gives the same store."""
    del options
    name = urlsplit(url).netloc + urlsplit(url).path
    with _lock:
        return _named.setdefault(name, MemoryStore())

"""Local folder store: the embedded default (a plain path or a ``file://`` URL)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from obstore.store import LocalStore

__all__ = ["open_local"]


def open_local(url: str, options: dict[str, str]) -> LocalStore:
    """A store over a folder, created when missing so artifacts can be copied in later."""
    del options  # a folder needs none
    path = Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url)
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return LocalStore(prefix=path)

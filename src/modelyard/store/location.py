"""Where a store URL points, compared with the places an operator allowed or trusted.

A local store (a plain path or ``file://``) is compared by its real path, links
resolved, so neither ``..`` nor a symbolic link can step out of an allowed folder;
any other URL (``s3://bucket/prefix/``...) by its text, on a ``/`` boundary, so
``s3://bucket/models`` does not cover ``s3://bucket/models-other/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["is_local", "local_path", "within"]


def is_local(url: str) -> bool:
    """Whether ``url`` names a folder on this host (a path, or ``file://``)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    """The real path of a local store URL (links and ``..`` resolved, ``~`` expanded)."""
    raw = unquote(urlsplit(url).path) if url.startswith("file://") else url
    return Path(os.path.realpath(Path(raw).expanduser()))


def _key(url: str) -> str:
    if is_local(url):
        return str(local_path(url)).rstrip("/") + "/"
    return url.rstrip("/") + "/"


def within(url: str, roots: Iterable[str | Path]) -> bool:
    """Whether the store ``url`` lies in one of ``roots`` (itself or below)."""
    key = _key(url)
    return any(key.startswith(_key(str(root))) for root in roots)

"""Stores: where artifacts live, chosen by URL scheme.

``open_store("./models")`` (a folder, the default), ``file:///srv/models``,
``s3://bucket/prefix/``, ``gs://…``, ``az://…``, ``memory://name``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from modelyard.errors import ValidationError
from modelyard.store.base import ObjectInfo, Store
from modelyard.store.cloud import open_azure, open_gcs
from modelyard.store.local import open_local
from modelyard.store.memory import open_memory
from modelyard.store.s3 import open_s3

__all__ = ["ObjectInfo", "Store", "open_store"]

_BACKENDS: dict[str, Callable[[str, dict[str, str]], Any]] = {
    "": open_local,
    "file": open_local,
    "s3": open_s3,
    "s3a": open_s3,
    "gs": open_gcs,
    "az": open_azure,
    "abfs": open_azure,
    "memory": open_memory,
}


def open_store(url: str, options: dict[str, str] | None = None) -> Store:
    """Open the store named by ``url``; a path with no scheme is a local folder."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    try:
        factory = _BACKENDS[scheme.lower()]
    except KeyError:
        known = ", ".join(sorted(f"{s}://" for s in _BACKENDS if s))
        raise ValidationError(f"Unsupported store URL '{url}': use a folder or one of {known}") from None
    try:
        backend = factory(url, dict(options or {}))
    except ValidationError:
        raise
    except Exception as exc:  # obstore raises ValueError/its own errors on bad config
        raise ValidationError(f"Cannot open store '{url}': {str(exc).splitlines()[0]}") from exc
    return Store(url, backend)

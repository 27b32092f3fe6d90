"""The store: artifacts under one URL prefix, read through obstore.

Every backend (local folder, S3, GCS, Azure, memory) is an obstore ``ObjectStore``;
this module wraps it with the few operations modelyard needs and translates
obstore's exceptions into :mod:`modelyard.errors` at the boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import BaseError as ObstoreError

from modelyard.errors import ArtifactNotFound, InvalidTargetModel, StoreError

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["ObjectInfo", "Store"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object under the store prefix: its key, size in bytes and version.

    ``version`` changes whenever the object is overwritten (S3 version id or ETag,
    inode+mtime+size for a local file), so it is part of a cached model's identity.
    """

    key: str
    size: int
    version: str


def _info(meta: Any) -> ObjectInfo:
    version = meta.get("version") or meta.get("e_tag") or f"{meta['last_modified'].timestamp()}-{meta['size']}"
    return ObjectInfo(key=meta["path"], size=int(meta["size"]), version=str(version).strip('"'))


@contextmanager
def _translated(key: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise ArtifactNotFound(f"Could not find model data at '{key}'.") from exc
    except ValueError as exc:  # obstore refuses unparseable paths ("..", empty segments)
        raise InvalidTargetModel(f"Invalid target model '{key}': {str(exc).splitlines()[0]}") from exc
    except (ObstoreError, OSError) as exc:
        raise StoreError(f"Store failed on '{key}': {str(exc).splitlines()[0]}") from exc


class Store:
    """Artifacts under one URL prefix.

    Build one with :func:`modelyard.store.open_store`; tests may wrap any obstore
    backend directly (``Store("memory://", MemoryStore())``).
    """

    def __init__(self, url: str, backend: ObjectStore) -> None:
        self.url = url
        self.backend = backend

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    async def head(self, key: str) -> ObjectInfo:
        """Size and version of ``key``; :class:`ArtifactNotFound` when it is absent."""
        with _translated(key):
            return _info(await obstore.head_async(self.backend, key))

    async def get(self, key: str) -> tuple[ObjectInfo, bytes]:
        """The object's bytes together with the version they belong to."""
        with _translated(key):
            result = await obstore.get_async(self.backend, key)
            data = await result.bytes_async()
            return _info(result.meta), bytes(data)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursively)."""
        with _translated(prefix or "/"):
            chunks = await obstore.list(self.backend, prefix or None).collect_async()
        return sorted((_info(meta) for meta in chunks), key=lambda info: info.key)

    async def put(self, key: str, data: bytes) -> ObjectInfo:
        """Write ``data`` at ``key`` (used by the demo and by tests)."""
        with _translated(key):
            await obstore.put_async(self.backend, key, data)
        return await self.head(key)

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""
        try:
            with _translated(key):
                await obstore.delete_async(self.backend, key)
        except ArtifactNotFound:
            pass

    async def check(self) -> None:
        """Raise :class:`StoreError` unless the store answers (one metadata request, no listing)."""
        with suppress(ArtifactNotFound):  # it answered: the object is absent, as expected
            await self.head(".modelyard-reachability-check")

"""The store: artifacts under one URL prefix, read through obstore.

Every backend (local folder, S3, GCS, Azure, memory) is an obstore ``ObjectStore``;
this module wraps it with the few operations modelyard needs and translates
obstore's exceptions into :mod:`modelyard.errors` at the boundary. Messages never
carry the host paths or addresses obstore puts in its own (those are logged); a
local store never reads outside its folder (:class:`~modelyard.store.local.LocalRoot`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from obstore.store import LocalStore

from modelyard.errors import ArtifactNotFound, InvalidTargetModel, StoreError
from modelyard.store.local import LocalRoot

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["ObjectInfo", "Store"]

log = logging.getLogger("modelyard.store")

#: chunks of a streamed object are at least this large (obstore's default, 10 MB, is too much to hold per load)
CHUNK = 256 * 1024
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_URL_OR_PATH = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+|(?<![\w.])/[^\s'\"`:,;)]+")
_LIST_INLINE = 256  # listings up to this many objects are checked on the event loop


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


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    match = _OS_ERROR.search(str(exc))
    return int(match[1]) if match else None


def _reason(exc: BaseException) -> str:
    """What went wrong, in words that name no host path or address."""
    code = _errno(exc)
    if code is not None:
        return os.strerror(code)
    if isinstance(exc, PermissionDeniedError):
        return "permission denied"
    if isinstance(exc, UnauthenticatedError):
        return "the store refused the credentials"
    text = _URL_OR_PATH.sub("…", (str(exc).splitlines() or [""])[0]).strip()
    return text or type(exc).__name__


@contextmanager
def _translated(key: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise ArtifactNotFound(f"Could not find model data at '{key}'.") from exc
    except ValueError as exc:  # obstore refuses unparseable paths ("..", empty segments)
        raise InvalidTargetModel(f"Invalid target model '{key}': it is not a valid path in the store.") from exc
    except (ObstoreError, OSError) as exc:
        code = _errno(exc)
        if code in _MISSING:
            raise ArtifactNotFound(f"Could not find model data at '{key}'.") from exc
        if code == errno.ENAMETOOLONG:
            raise InvalidTargetModel(f"Invalid target model '{key}': a name in it is too long.") from exc
        log.warning("the store failed on '%s': %s", key, " ".join(str(exc).split())[:2000])
        raise StoreError(f"Store failed on '{key}': {_reason(exc)}.") from exc


def _chunks(key: str, stream: Any) -> Iterator[memoryview]:
    """A streamed object's chunks, with the store's errors translated."""
    with _translated(key):
        for chunk in stream:
            yield memoryview(chunk)


class Store:
    """Artifacts under one URL prefix.

    Build one with :func:`modelyard.store.open_store`; tests may wrap any obstore
    backend directly (``Store("memory://", MemoryStore())``).
    """

    def __init__(self, url: str, backend: ObjectStore) -> None:
        self.url = url
        self.backend = backend
        prefix = backend.prefix if isinstance(backend, LocalStore) else None
        #: the folder of a local store (links resolved); None for every other backend
        self.local = LocalRoot(prefix) if prefix is not None else None

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    async def head(self, key: str) -> ObjectInfo:
        """Size and version of ``key``; :class:`ArtifactNotFound` when it is absent."""
        checked = self.local.check(key) if self.local is not None else None
        with _translated(key):
            meta = await obstore.head_async(self.backend, key)
        if self.local is not None:
            self.local.verify(key, checked, meta)
        return _info(meta)

    async def open(self, key: str, *, inline: int) -> tuple[ObjectInfo, bytes | Iterator[memoryview]]:
        """The object's version and content: its bytes when it is at most ``inline`` bytes long,
        else an iterator over its chunks, to be read on a worker thread (each step blocks)."""
        checked = self.local.check(key) if self.local is not None else None
        with _translated(key):
            result = await obstore.get_async(self.backend, key)
            if self.local is not None:
                self.local.verify(key, checked, result.meta)
            info = _info(result.meta)
            if info.size <= inline:
                return info, bytes(await result.bytes_async())
            return info, _chunks(key, result.stream(min_chunk_size=CHUNK))

    async def get(self, key: str) -> tuple[ObjectInfo, bytes]:
        """The object's bytes together with the version they belong to."""
        info, data = await self.open(key, inline=1 << 62)
        assert isinstance(data, bytes)
        return info, data

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursively)."""
        with _translated(prefix or "/"):
            chunks = await obstore.list(self.backend, prefix or None).collect_async()
        infos = [_info(meta) for meta in chunks]
        if self.local is not None:
            keys = [info.key for info in infos]
            inside = (
                self.local.keep(keys) if len(keys) <= _LIST_INLINE else await asyncio.to_thread(self.local.keep, keys)
            )
            infos = [info for info in infos if info.key in inside]
        return sorted(infos, key=lambda info: info.key)

    async def any_under(self, prefix: str) -> bool:
        """Whether at least one object lies under ``prefix`` (one listing request at most)."""
        stream: AsyncIterator[Any] = obstore.list(self.backend, prefix, chunk_size=64)
        with _translated(prefix):
            async for chunk in stream:
                keys = [meta["path"] for meta in chunk]
                if keys and (self.local is None or self.local.keep(keys)):
                    return True
        return False

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

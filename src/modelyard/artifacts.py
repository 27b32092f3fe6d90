"""Artifacts on local disk: download, safe unpacking and the disk cache tier.

An artifact is what sits under the store prefix for a target model: a SageMaker
``model.tar.gz`` (any ``.tar``/``.tar.gz`` archive), a single model file, or a folder
of objects, named with a trailing slash (``Houston/``). :class:`DiskCache` downloads
it once per version, unpacks it into its own folder and keeps it under a byte budget,
so a model evicted from memory reloads without touching the store.

Downloads stream into :mod:`modelyard.unpack`, which refuses anything that could
write outside the artifact's folder and stops as soon as the artifact has written
more than :attr:`DiskCache.limit` bytes (decompression bombs). The folder itself is
claimed and watched by :mod:`modelyard.diskroot`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelyard import diskroot, unpack
from modelyard.errors import (
    ArtifactInvalid,
    ArtifactUnreadable,
    DiskUnavailable,
    ModelTooLarge,
    ModelyardError,
    ServiceUnavailable,
    release_frames,
)
from modelyard.settings import Settings
from modelyard.store import ObjectInfo, Store
from modelyard.targets import resolve, resolve_version, validate_target

__all__ = ["Artifact", "DiskCache", "resolve_version", "validate_target"]

log = logging.getLogger("modelyard.artifacts")

#: objects up to this size are read whole in one call; larger ones are streamed
INLINE = 1024 * 1024
_READS = 4  # reads of an archive that changes under them, before giving up
_BACKOFF = 0.05  # seconds before the second read; doubled each time
_PARALLEL = 8  # folder artifacts: objects downloaded at once


@dataclass(frozen=True, slots=True)
class Artifact:
    """An artifact unpacked on local disk, ready for a handler to load."""

    target: str
    version: str
    path: Path
    disk_size: int
    download_seconds: float
    from_disk: bool


@dataclass(slots=True)
class _DiskEntry:
    path: Path
    size: int
    version: str
    leases: int = 0
    doomed: bool = False  # delete once the last lease ends


def _entry_name(target: str, version: str) -> str:
    return hashlib.sha256(f"{target}\0{version}".encode()).hexdigest()[:40]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class DiskCache:
    """Unpacked artifacts in ``root`` under a byte budget, least recently used out first.

    ``root`` must be modelyard's (:func:`modelyard.diskroot.claim`; ``store_root``, a
    local store's folder, must not overlap it). Entries survive restarts: each folder
    carries a small metadata file and is indexed again when the cache opens. An entry
    being loaded is leased and never deleted.

    One artifact may write at most :attr:`limit` bytes: ``max_unpacked``, the disk
    ``budget``, and ``max_loadable`` (the most a model could take on disk and still
    fit the memory budget once loaded), whichever is smallest.
    """

    def __init__(
        self,
        root: Path,
        budget: int,
        *,
        max_unpacked: int,
        max_loadable: int | None = None,
        store_root: Path | None = None,
    ) -> None:
        diskroot.claim(root, store_root)
        self.root = root
        self.budget = budget
        self.max_unpacked = max_unpacked
        self.max_loadable = max_loadable
        #: the most bytes one artifact may unpack to
        self.limit = min(max_unpacked, budget, max_loadable if max_loadable is not None else budget)
        #: whether the folder can be written (``/ping`` asks it)
        self.health = diskroot.Health(root)
        self._entries: OrderedDict[tuple[str, str], _DiskEntry] = OrderedDict()
        self._versions: dict[str, set[str]] = {}  # target -> versions on disk
        self.used = 0
        self.evictions = 0
        self._scan()

    @classmethod
    def for_endpoint(cls, settings: Settings, store: Store) -> DiskCache:
        """The disk cache an endpoint's ``settings`` describe, kept apart from its ``store``."""
        return cls(
            settings.disk_cache_dir(),
            int(settings.disk),
            max_unpacked=int(settings.max_unpacked),
            max_loadable=settings.max_loadable(),
            store_root=store.local.path if store.local is not None else None,
        )

    def _scan(self) -> None:
        """Index the entries of an earlier run; remove only what the cache itself names."""
        for child in sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime):
            kind = diskroot.owned(child.name)
            if kind == "tmp":
                _remove(child)
            elif kind == "entry":
                try:
                    meta = json.loads((child / diskroot.META).read_text())
                    entry = _DiskEntry(child / "model", int(meta["size"]), str(meta["version"]))
                    if _entry_name(str(meta["target"]), entry.version) != child.name:
                        raise ValueError("entry folder renamed")
                    self._add((str(meta["target"]), entry.version), entry)
                except (OSError, ValueError, KeyError):
                    _remove(child)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def problem(self) -> str | None:
        """Why the disk cache cannot be written now (no host path in it), or None."""
        return self.health.problem()

    async def fetch(self, store: Store, target: str, version: str | None = None) -> Artifact:
        """The current version of ``target`` on disk, downloading it when needed.

        ``version`` is a version the caller confirmed recently: when it is on disk the
        store is not asked again (a reload after eviction then costs no round trip).
        The caller must :meth:`release` the returned artifact once it is loaded.
        """
        if version is not None and (cached := self._leased(target, version)) is not None:
            return cached
        info, members = await resolve(store, target)
        if (cached := self._leased(target, info.version)) is not None:
            return cached
        started = time.perf_counter()
        try:
            if members is None:
                info, path, size = await self._download_file(store, target)
            else:
                path, size = await self._download_folder(store, target, info, members)
        except BaseException as exc:
            release_frames(exc)  # no downloaded buffer lives on in the stored error
            raise
        seconds = time.perf_counter() - started
        self._drop_other_versions(target)
        if (target, info.version) in self._entries:  # a discarded entry still leased: its folder was replaced
            self._forget((target, info.version))
        self._add((target, info.version), _DiskEntry(path, size, info.version, leases=1))
        self._trim()
        return Artifact(target, info.version, path, size, seconds, False)

    def _quota(self, target: str) -> unpack.Quota:
        limit = self.limit

        def too_large() -> ModelyardError:
            message = f"Artifact '{target}' is larger than {limit} bytes unpacked"
            if limit == self.max_unpacked:
                return ArtifactInvalid(f"{message} (the max_unpacked setting).")
            if limit == self.max_loadable:
                return ModelTooLarge(f"{message}: once loaded, it could not fit in the whole budget of memory.")
            return ModelTooLarge(f"{message}, more than this endpoint's whole disk cache budget.")

        return unpack.Quota(limit, too_large)

    async def _download_file(self, store: Store, target: str) -> tuple[ObjectInfo, Path, int]:
        """Download and unpack one object; read it again while it changes under the read.

        A local file overwritten in place can be read half-written: that is no corrupt
        archive. So an unreadable archive is looked at again after a pause: when its
        version moved meanwhile it is read again (the pause doubling each time), and a
        503 says to retry if it never settles; when it did not move, it is corrupt.
        """
        name = PurePosixPath(target).name
        for attempt in range(_READS):
            info, content = await store.open(target, inline=INLINE)
            quota = self._quota(target)
            try:
                fill = functools.partial(_unpack, name, content, quota=quota, size=info.size)
                path, size = await asyncio.to_thread(self._write, target, info.version, fill)
                return info, path, size
            except ArtifactUnreadable:
                del content, fill  # a large buffer must not outlive the failure
                await asyncio.sleep(_BACKOFF * 2**attempt)  # a writer between two writes shows itself
                now = await store.head(target)
                if now.version == info.version:
                    raise
                log.info("artifact %s changed while it was read (read %s, now %s)", target, info.version, now.version)
        raise ServiceUnavailable(
            f"Artifact '{target}' changed while it was being read, {_READS} times in a row "
            "(it is being rewritten in place); retry shortly."
        )

    async def _download_folder(
        self, store: Store, target: str, info: ObjectInfo, members: list[ObjectInfo]
    ) -> tuple[Path, int]:
        quota = self._quota(target)
        quota.check(sum(m.size for m in members))  # the listing already says it cannot fit
        start = len(target)
        slots = asyncio.Semaphore(_PARALLEL)

        async def fetch_member(member: ObjectInfo, dest: Path) -> None:
            async with slots:
                quota.check(0)  # another member crossed the limit: stop here
                _, content = await store.open(member.key, inline=INLINE)
                rel = member.key[start:]
                await asyncio.to_thread(_write_member, content, dest, quota, target, rel)

        tmp = await asyncio.to_thread(self._begin, target, info.version)
        try:
            # every download runs to its end or its failure before the folder is removed
            outcomes = await asyncio.gather(*(fetch_member(m, tmp / "model") for m in members), return_exceptions=True)
            if error := next((o for o in outcomes if isinstance(o, BaseException)), None):
                raise error
            return await asyncio.to_thread(self._commit, tmp, target, info.version, quota.used)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._note(exc)
            raise

    def _write(self, target: str, version: str, fill: Callable[[Path], int]) -> tuple[Path, int]:
        """On a worker thread: a new entry folder, filled by ``fill(model_dir)``, then committed."""
        tmp = self._begin(target, version)
        try:
            size = fill(tmp / "model")
            return self._commit(tmp, target, version, size)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._note(exc)
            raise

    def _begin(self, target: str, version: str) -> Path:
        tmp = self.root / f".tmp-{_entry_name(target, version)}-{uuid.uuid4().hex[:8]}"
        try:
            try:
                tmp.mkdir()
            except FileNotFoundError:  # the folder was removed while serving: it is still ours
                diskroot.ensure_root(self.root)
                tmp.mkdir()
            (tmp / "model").mkdir()
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            self._note(exc)
            raise unpack.disk_failure(exc) from exc
        return tmp

    def _commit(self, tmp: Path, target: str, version: str, size: int) -> tuple[Path, int]:
        final = self.root / _entry_name(target, version)
        try:
            (tmp / diskroot.META).write_text(json.dumps({"target": target, "version": version, "size": size}))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError as exc:
            raise unpack.disk_failure(exc) from exc
        self.health.succeeded()
        return final / "model", size

    def _note(self, exc: BaseException) -> None:
        """Record a write that failed because of the disk (and log where, which clients never see)."""
        if isinstance(exc, OSError):
            self.health.failed(exc.strerror or type(exc).__name__)
            log.error("the disk cache at %s cannot be written: %s", self.root, exc)
        elif isinstance(exc, DiskUnavailable) and exc.__cause__ is not None:
            self._note(exc.__cause__)

    def _leased(self, target: str, version: str) -> Artifact | None:
        entry = self._entries.get((target, version))
        if entry is None or entry.doomed or not entry.path.exists():
            return None
        self._entries.move_to_end((target, version))
        entry.leases += 1
        return Artifact(target, version, entry.path, entry.size, 0.0, True)

    def release(self, artifact: Artifact) -> None:
        """End the lease taken by :meth:`fetch`; the entry may now be evicted."""
        key = (artifact.target, artifact.version)
        entry = self._entries.get(key)
        if entry is not None and entry.leases > 0:
            entry.leases -= 1
            if entry.doomed and entry.leases == 0:
                self._remove(key)
        self._trim()

    def discard(self, target: str, version: str) -> bool:
        """Delete the entry of ``target`` at ``version`` (an artifact that cannot load).

        A leased entry is deleted when its last lease ends and is never handed out
        again meanwhile. Returns whether there was such an entry.
        """
        entry = self._entries.get((target, version))
        if entry is None:
            return False
        if entry.leases:
            entry.doomed = True
        else:
            self._remove((target, version))
        return True

    def invalidate(self, target: str) -> int:
        """Delete every version of ``target`` from disk; returns how many were removed."""
        return self._drop_other_versions(target, keep=None)

    def _drop_other_versions(self, target: str, keep: str | None = None) -> int:
        stale = [v for v in self._versions.get(target, ()) if v != keep and self._entries[(target, v)].leases == 0]
        for version in stale:
            self._remove((target, version))
        return len(stale)

    def _trim(self) -> None:
        while self.used > self.budget:
            # least recently used first; the scan stops at the first entry not leased
            key = next((k for k, e in self._entries.items() if e.leases == 0), None)
            if key is None:
                return
            self._remove(key)
            self.evictions += 1

    def _add(self, key: tuple[str, str], entry: _DiskEntry) -> None:
        self._entries[key] = entry
        self._versions.setdefault(key[0], set()).add(key[1])
        self.used += entry.size

    def _remove(self, key: tuple[str, str]) -> None:
        shutil.rmtree(self._forget(key).path.parent, ignore_errors=True)

    def _forget(self, key: tuple[str, str]) -> _DiskEntry:
        entry = self._entries.pop(key)
        versions = self._versions[key[0]]
        versions.discard(key[1])
        if not versions:
            del self._versions[key[0]]
        self.used -= entry.size
        return entry


def _unpack(name: str, content: bytes | Iterator[memoryview], dest: Path, quota: unpack.Quota, size: int) -> int:
    with unpack.source(content) as file:  # closing it ends a streamed download at once
        return unpack.unpack(name, file, dest, quota, size)


def _write_member(
    content: bytes | Iterator[memoryview], dest: Path, quota: unpack.Quota, target: str, rel: str
) -> None:
    with unpack.source(content) as file:
        unpack.write_file(file, dest / rel, quota, target, rel)

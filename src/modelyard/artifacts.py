"""Artifacts on local disk: download, safe unpacking and the disk cache tier.

An artifact is what sits under the store prefix for a target model: a SageMaker
``model.tar.gz`` (any ``.tar``/``.tar.gz`` archive), a single model file, or a folder
of objects. :class:`DiskCache` downloads it once per version, unpacks it into its own
folder and keeps it under a byte budget, so a model evicted from memory reloads
without touching the store.

Unpacking refuses anything that could write outside the artifact's folder (absolute
names, ``..``, links pointing out, devices) and bounds the unpacked size (tar bombs).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from modelyard.errors import ArtifactInvalid, ArtifactNotFound, InvalidTargetModel
from modelyard.store import ObjectInfo, Store

__all__ = ["Artifact", "DiskCache", "resolve_version", "validate_target"]

_META = ".modelyard.json"
_MAX_MEMBERS = 100_000
MAX_TARGET_LENGTH = 1024


def validate_target(target: str | None) -> str:
    """Check a target model name; return it unchanged or raise :class:`InvalidTargetModel`.

    A target is a relative path under the store prefix: 1–1024 printable characters,
    no absolute path, no ``.``/``..`` segment (also when percent-encoded), no backslash.
    """
    if not target:
        raise InvalidTargetModel("The target model is missing: set the X-Amzn-SageMaker-Target-Model header.")
    if len(target) > MAX_TARGET_LENGTH:
        raise InvalidTargetModel(f"The target model is longer than {MAX_TARGET_LENGTH} characters.")
    if not target.isprintable():
        raise InvalidTargetModel("The target model contains non-printable characters.")
    decoded = unquote(unquote(target))
    segments = decoded.replace("\\", "/").split("/")
    if decoded.startswith(("/", "\\")) or "\\" in target or any(s in (".", "..") for s in segments):
        raise InvalidTargetModel(f"Invalid target model '{target}': it must be a relative path inside the store.")
    if target.endswith("/") and len(target.strip("/")) == 0:
        raise InvalidTargetModel(f"Invalid target model '{target}'.")
    return target


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


def _entry_name(target: str, version: str) -> str:
    return hashlib.sha256(f"{target}\0{version}".encode()).hexdigest()[:40]


class DiskCache:
    """Unpacked artifacts in ``root`` under a byte budget, least recently used out first.

    Entries survive restarts: each folder carries a small metadata file and is indexed
    again when the cache opens. An entry being loaded is leased and never deleted.
    """

    def __init__(self, root: Path, budget: int, *, max_unpacked: int) -> None:
        self.root = root
        self.budget = budget
        self.max_unpacked = max_unpacked
        self._entries: OrderedDict[tuple[str, str], _DiskEntry] = OrderedDict()
        self._versions: dict[str, set[str]] = {}  # target -> versions on disk
        self.used = 0
        self.evictions = 0
        root.mkdir(parents=True, exist_ok=True)
        self._scan()

    def _scan(self) -> None:
        for child in sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime):
            if child.name.startswith(".tmp-"):
                shutil.rmtree(child, ignore_errors=True)
                continue
            try:
                meta = json.loads((child / _META).read_text())
                entry = _DiskEntry(child / "model", int(meta["size"]), str(meta["version"]))
                self._add((str(meta["target"]), entry.version), entry)
            except (OSError, ValueError, KeyError):
                shutil.rmtree(child, ignore_errors=True)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    async def fetch(self, store: Store, target: str, version: str | None = None) -> Artifact:
        """The current version of ``target`` on disk, downloading it when needed.

        ``version`` is a version the caller confirmed recently: when it is on disk the
        store is not asked again (a reload after eviction then costs no round trip).
        The caller must :meth:`release` the returned artifact once it is loaded.
        """
        if version is not None and (cached := self._leased(target, version)) is not None:
            return cached
        info, members = await _resolve(store, target)
        if (cached := self._leased(target, info.version)) is not None:
            return cached
        started = time.perf_counter()
        if members is None:
            info, data = await store.get(target)
            blobs = {PurePosixPath(target).name: data}
        else:
            fetched = await asyncio.gather(*(store.get(m.key) for m in members))
            blobs = {m.key[len(target.rstrip("/")) + 1 :]: data for m, (_, data) in zip(members, fetched, strict=True)}
        path, size = await asyncio.to_thread(self._write, target, info.version, blobs, members is None)
        seconds = time.perf_counter() - started
        self._drop_other_versions(target)
        self._add((target, info.version), _DiskEntry(path, size, info.version, leases=1))
        self._trim()
        return Artifact(target, info.version, path, size, seconds, False)

    def _leased(self, target: str, version: str) -> Artifact | None:
        entry = self._entries.get((target, version))
        if entry is None or not entry.path.exists():
            return None
        self._entries.move_to_end((target, version))
        entry.leases += 1
        return Artifact(target, version, entry.path, entry.size, 0.0, True)

    def release(self, artifact: Artifact) -> None:
        """End the lease taken by :meth:`fetch`; the entry may now be evicted."""
        entry = self._entries.get((artifact.target, artifact.version))
        if entry is not None and entry.leases > 0:
            entry.leases -= 1
        self._trim()

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
        entry = self._entries.pop(key)
        versions = self._versions[key[0]]
        versions.discard(key[1])
        if not versions:
            del self._versions[key[0]]
        self.used -= entry.size
        shutil.rmtree(entry.path.parent, ignore_errors=True)

    def _write(self, target: str, version: str, blobs: dict[str, bytes], single: bool) -> tuple[Path, int]:
        final = self.root / _entry_name(target, version)
        tmp = self.root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        model_dir = tmp / "model"
        model_dir.mkdir(parents=True)
        try:
            if single and len(blobs) == 1:
                ((name, data),) = blobs.items()
                size = _unpack_single(name, data, model_dir, self.max_unpacked)
            else:
                size = 0
                for rel, data in blobs.items():
                    size += len(data)
                    if size > self.max_unpacked:
                        raise ArtifactInvalid(f"Artifact '{target}' is larger than {self.max_unpacked} bytes unpacked.")
                    dest = model_dir / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(data)
            (tmp / _META).write_text(json.dumps({"target": target, "version": version, "size": size}))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final / "model", size


async def _resolve(store: Store, target: str) -> tuple[ObjectInfo, list[ObjectInfo] | None]:
    """The target's version; for a folder artifact also its members."""
    if not target.endswith("/"):
        try:
            return await store.head(target), None
        except ArtifactNotFound:
            pass
    prefix = target.rstrip("/") + "/"
    members = [m for m in await store.list(prefix) if not m.key.endswith("/")]
    if not members:
        raise ArtifactNotFound(f"Could not find model data for target model '{target}' under {store.url}.")
    digest = hashlib.sha256("\n".join(f"{m.key}\0{m.version}" for m in members).encode()).hexdigest()[:32]
    return ObjectInfo(prefix, sum(m.size for m in members), digest), members


async def resolve_version(store: Store, target: str) -> str:
    """The version of ``target`` in the store now (:class:`ArtifactNotFound` if absent)."""
    info, _ = await _resolve(store, target)
    return info.version


def _is_tar(name: str, data: bytes) -> bool:
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return True
    return data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar"


def _unpack_single(name: str, data: bytes, dest: Path, limit: int) -> int:
    if not _is_tar(name, data):
        if len(data) > limit:
            raise ArtifactInvalid(f"Artifact '{name}' is larger than {limit} bytes.")
        (dest / name).write_bytes(data)
        return len(data)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = _safe_members(archive, name, limit)
            archive.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArtifactInvalid(f"Artifact '{name}' is not a readable tar archive: {exc}") from exc
    return sum(m.size for m in members if m.isfile())


def _safe_members(archive: tarfile.TarFile, name: str, limit: int) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in archive:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts:
            raise ArtifactInvalid(f"Artifact '{name}' has a member outside its folder: '{member.name}'.")
        if member.issym() or member.islnk():
            link = PurePosixPath(member.linkname)
            base = path.parent if member.issym() else PurePosixPath()
            if link.is_absolute() or ".." in (base / link).parts:
                raise ArtifactInvalid(f"Artifact '{name}' has a link pointing outside its folder: '{member.name}'.")
        elif not (member.isfile() or member.isdir()):
            raise ArtifactInvalid(f"Artifact '{name}' has a special file: '{member.name}'.")
        total += member.size if member.isfile() else 0
        if total > limit:
            raise ArtifactInvalid(f"Artifact '{name}' is larger than {limit} bytes unpacked.")
        members.append(member)
        if len(members) > _MAX_MEMBERS:
            raise ArtifactInvalid(f"Artifact '{name}' has more than {_MAX_MEMBERS} members.")
    return members

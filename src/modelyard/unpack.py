"""Unpacking one artifact into its folder: one pass, bounded memory, nothing outside it.

The bytes come whole (a small object) or as chunks streamed from the store on the
calling worker thread. A compressed archive (gzip, bzip2, xz) is decompressed a
block at a time and read as a tar stream: every member is checked as it comes (no
absolute name, no ``..``, no link leading out, no device or FIFO, at most
:data:`MAX_MEMBERS` of them) and written by this module, which counts every byte it
writes against a :class:`Quota`. Crossing the quota stops the download at once, so a
decompression bomb costs what it wrote up to the limit, never its full size, and
never more memory than a few buffers.

A write that fails because of the disk (read-only, full, no permission) is the
server's problem, :class:`~modelyard.errors.DiskUnavailable`; one that fails because
of the archive's layout is :class:`~modelyard.errors.ArtifactInvalid`. Messages name
members by their path inside the artifact, never by a host path.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import itertools
import lzma
import os
import stat
import tarfile
import threading
import zlib
from _compression import DecompressReader
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, cast

from modelyard.errors import ArtifactInvalid, ArtifactUnreadable, DiskUnavailable, ModelyardError

__all__ = [
    "MAX_MEMBERS",
    "ChunkReader",
    "Quota",
    "disk_failure",
    "is_archive",
    "is_disk_failure",
    "source",
    "unpack",
    "write_file",
]

#: members one archive may hold
MAX_MEMBERS = 10_000  # a real artifact holds tens of files; each costs an inode and a few syscalls
_BLOCK = 256 * 1024
_DRAIN = 1024 * 1024  # read past the tar end marker so the compressor checks its CRC
_XZ_MEMORY = 16 * 1024 * 1024  # xz's default preset (6) needs 9 MiB to decompress; 7 needs 17
#: errors that say the disk, not the artifact, is at fault
_DISK_ERRNOS = {
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EIO,
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOMEM,
}
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class Quota:
    """The bytes one artifact may still write (every file of it, from any thread)."""

    def __init__(self, limit: int, too_large: Callable[[], ModelyardError]) -> None:
        self.limit = limit
        self.used = 0
        self._too_large = too_large
        self._lock = threading.Lock()

    def check(self, size: int) -> None:
        """Refuse now when ``size`` more bytes cannot fit (a declared size, before writing)."""
        if self.used + size > self.limit:
            raise self._too_large()

    def take(self, size: int) -> None:
        """Count ``size`` bytes about to be written; refuse when they cross the limit."""
        with self._lock:
            self.used += size
            if self.used > self.limit:
                raise self._too_large()


def is_disk_failure(exc: OSError) -> bool:
    """Whether a failed write is the disk's fault (read-only, full, no permission...)."""
    return exc.errno in _DISK_ERRNOS


def disk_failure(exc: OSError) -> DiskUnavailable:
    """The error a client sees when the disk cache cannot be written (no host path in it)."""
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return DiskUnavailable(f"The disk cache cannot be written ({reason}); the model cannot be fetched now.")


def _write_error(exc: OSError, artifact: str, member: str) -> ModelyardError:
    if is_disk_failure(exc):
        return disk_failure(exc)
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return ArtifactInvalid(f"Artifact '{artifact}' has a member that cannot be written: '{member}' ({reason}).")


def _unreadable(artifact: str, exc: BaseException) -> ArtifactUnreadable:
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc).split("\n")[0]
    return ArtifactUnreadable(f"Artifact '{artifact}' is not a readable tar archive: {reason or type(exc).__name__}")


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks (a streamed object)."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # ends the download: a refused artifact is not read to its end
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._current = memoryview(b"")
        super().close()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._current:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._current = chunk.cast("B") if chunk.format != "B" else chunk
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


def source(content: bytes | Iterator[memoryview]) -> IO[bytes]:
    """A buffered binary file over an artifact's content, whole or streamed."""
    if isinstance(content, bytes):
        return io.BytesIO(content)
    return io.BufferedReader(ChunkReader(content), buffer_size=_BLOCK)


def _head(file: IO[bytes]) -> bytes:
    if isinstance(file, io.BytesIO):
        return file.getbuffer()[:512].tobytes()
    assert isinstance(file, io.BufferedReader)
    return file.peek(512)[:512]


def is_archive(name: str, head: bytes) -> bool:
    """Whether an artifact is a (compressed) tar archive, from its name and first bytes."""
    return name.endswith(_TAR_SUFFIXES) or head.startswith(_COMPRESSED) or head[257:262] == b"ustar"


def _decompressed(file: IO[bytes], head: bytes) -> IO[bytes]:
    # The stdlib's file wrappers decompress a bounded block per read, whatever the
    # ratio; tarfile's own ``r|gz`` inflates each 10 KiB read without a bound.
    wrapper: io.BufferedIOBase
    if head.startswith(b"\x1f\x8b"):
        wrapper = gzip.GzipFile(fileobj=file, mode="rb")
    elif head.startswith(b"BZh"):
        wrapper = bz2.BZ2File(file)
    elif head.startswith(b"\xfd7zXZ\x00"):
        # xz allocates the dictionary its header asks for: capped, or a tiny file could ask for GBs
        reader = DecompressReader(file, lzma.LZMADecompressor, trailing_error=lzma.LZMAError, memlimit=_XZ_MEMORY)
        wrapper = io.BufferedReader(reader)
    else:
        return file
    return cast("IO[bytes]", wrapper)


def unpack(name: str, file: IO[bytes], dest: Path, quota: Quota, size: int | None = None) -> int:
    """Unpack the artifact ``name`` read from ``file`` into the folder ``dest``; returns bytes written.

    A tar archive (see :func:`is_archive`) is extracted, anything else is written as
    the single file ``dest/name`` (refused at once when its ``size`` cannot fit).
    """
    head = _head(file)
    if not is_archive(name, head):
        if size is not None:
            quota.check(size)
        write_file(file, dest / name, quota, name, name)
        return quota.used
    stream = _decompressed(file, head)
    try:
        archive = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - closed below, its errors translated
    except _READ_ERRORS as exc:
        raise _unreadable(name, exc) from exc
    with archive:
        for count in itertools.count(1):
            try:
                member = archive.next()
            except _READ_ERRORS as exc:
                raise _unreadable(name, exc) from exc
            if member is None:
                break
            # tarfile keeps every header it read otherwise (links are resolved on disk here)
            archive.members.clear()  # type: ignore[attr-defined]
            if count > MAX_MEMBERS:
                raise ArtifactInvalid(f"Artifact '{name}' has more than {MAX_MEMBERS} members.")
            _extract(archive, member, dest, quota, name)
    if stream is not file:
        _drain(stream, name)
    return quota.used


def _drain(stream: IO[bytes], name: str) -> None:
    """Read what follows the tar end marker, so a truncated or corrupt compressed stream is noticed."""
    left = _DRAIN
    try:
        while left > 0 and (block := stream.read(min(_BLOCK, left))):
            left -= len(block)
    except _READ_ERRORS as exc:
        raise _unreadable(name, exc) from exc


def _relative(member: tarfile.TarInfo, name: str) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise ArtifactInvalid(f"Artifact '{name}' has a member outside its folder: '{member.name}'.")
    return PurePosixPath(*path.parts) if path.parts else PurePosixPath(".")


def _link_target(member: tarfile.TarInfo, rel: PurePosixPath, name: str) -> PurePosixPath:
    link = PurePosixPath(member.linkname)
    base = rel.parent if member.issym() else PurePosixPath()
    if not member.linkname or link.is_absolute() or ".." in (base / link).parts:
        raise ArtifactInvalid(f"Artifact '{name}' has a link pointing outside its folder: '{member.name}'.")
    return base / link


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, quota: Quota, name: str) -> None:
    rel = _relative(member, name)
    target = dest / rel
    if member.isfile():
        quota.check(member.size)  # a declared size over the limit is refused before any byte is written
        file = archive.extractfile(member)
        assert file is not None
        write_file(file, target, quota, name, member.name)
    elif member.isdir():
        _make(lambda: target.mkdir(parents=True, exist_ok=True), name, member.name)
    elif member.issym():
        _link_target(member, rel, name)
        _make(lambda: _replace(target, lambda: os.symlink(member.linkname, target)), name, member.name)
    elif member.islnk():
        source = dest / _link_target(member, rel, name)
        try:
            regular = stat.S_ISREG(os.lstat(source).st_mode)
        except OSError:
            regular = False
        if not regular:
            raise ArtifactInvalid(f"Artifact '{name}' has a hard link to no earlier file: '{member.name}'.")
        _make(lambda: _replace(target, lambda: os.link(source, target, follow_symlinks=False)), name, member.name)
    else:
        raise ArtifactInvalid(f"Artifact '{name}' has a special file: '{member.name}'.")


def _replace(target: Path, create: Callable[[], None]) -> None:
    """Create ``target`` afresh: a later member of the same name wins, as with tar itself."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target) and not target.is_dir():
        target.unlink()
    create()


def _make(create: Callable[[], None], artifact: str, member: str) -> None:
    try:
        create()
    except OSError as exc:
        raise _write_error(exc, artifact, member) from exc


def write_file(file: IO[bytes], target: Path, quota: Quota, artifact: str, member: str) -> None:
    """Copy ``file`` to the new file ``target``, counting every byte against ``quota``.

    The file is created, never opened through a link, so a link planted by an earlier
    member cannot redirect the write.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        _replace(target, lambda: None)
        fd = os.open(target, flags, 0o644)
    except OSError as exc:
        raise _write_error(exc, artifact, member) from exc
    try:
        while True:
            try:
                block = file.read(_BLOCK)
            except _READ_ERRORS as exc:
                raise _unreadable(artifact, exc) from exc
            if not block:
                return
            quota.take(len(block))
            view = memoryview(block)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                raise _write_error(exc, artifact, member) from exc
    finally:
        os.close(fd)

from __future__ import annotations

import io
import os
import tarfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from obstore.store import LocalStore, MemoryStore

from modelyard.artifacts import DiskCache, resolve_version, validate_target
from modelyard.demo import make_artifact as tar_gz
from modelyard.diskroot import MARKER
from modelyard.errors import (
    ArtifactInvalid,
    ArtifactNotFound,
    InvalidTargetModel,
    ModelTooLarge,
    ServiceUnavailable,
    ValidationError,
)
from modelyard.store import Store, open_store
from tests.fixtures import made, zero_bomb

pytestmark = pytest.mark.anyio


def evil_tar(member: tarfile.TarInfo, content: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        member.size = len(content) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(content) if member.isfile() else None)
    return buffer.getvalue()


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture
def store() -> Store:
    return Store("memory://test", MemoryStore())


@pytest.fixture
def disk(tmp_path: Path) -> DiskCache:
    return DiskCache(tmp_path / "disk", 10_000_000, max_unpacked=1_000_000)


@pytest.mark.parametrize(
    "target",
    ["../x", "/etc/passwd", "a/../../b", "%2e%2e/x", "%252e%252e/x", "a/./b", "..", "a\\..\\b", "", "x" * 1025, "a\nb"],
)
def test_bad_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidTargetModel):
        validate_target(target)


@pytest.mark.parametrize(
    "target",
    ["Houston_TX.tar.gz", "eu/de/Berlin.tar.gz", "model v2.json", "a..b.tar.gz", ("x" * 254 + "/") * 4 + "abcd"],
)
def test_good_targets_pass(target: str) -> None:
    assert validate_target(target) == target


async def test_tar_gz_is_unpacked(store: Store, disk: DiskCache) -> None:
    await store.put("m.tar.gz", tar_gz({"xgboost-model": b"abc", "code/readme.txt": b"hi"}))
    artifact = await disk.fetch(store, "m.tar.gz")
    assert (artifact.path / "xgboost-model").read_bytes() == b"abc"
    assert (artifact.path / "code" / "readme.txt").read_bytes() == b"hi"
    assert artifact.disk_size == 5
    assert not artifact.from_disk


async def test_single_file_and_folder_artifacts(store: Store, disk: DiskCache) -> None:
    await store.put("one/model.json", b"{}")
    await store.put("folder/a.txt", b"a")
    await store.put("folder/sub/b.txt", b"bb")
    single = await disk.fetch(store, "one/model.json")
    assert (single.path / "model.json").read_bytes() == b"{}"
    folder = await disk.fetch(store, "folder/")
    assert (folder.path / "sub" / "b.txt").read_bytes() == b"bb"
    assert folder.disk_size == 3


async def test_second_fetch_comes_from_disk_and_new_version_replaces_old(store: Store, disk: DiskCache) -> None:
    await store.put("m.tar.gz", tar_gz({"f": b"v1"}))
    first = await disk.fetch(store, "m.tar.gz")
    disk.release(first)
    again = await disk.fetch(store, "m.tar.gz")
    assert again.from_disk
    assert again.version == first.version
    disk.release(again)
    await store.put("m.tar.gz", tar_gz({"f": b"v2-longer"}))
    assert await resolve_version(store, "m.tar.gz") != first.version
    second = await disk.fetch(store, "m.tar.gz")
    assert (second.path / "f").read_bytes() == b"v2-longer"
    assert not first.path.exists()
    assert len(disk) == 1


async def test_missing_artifact(store: Store, disk: DiskCache) -> None:
    with pytest.raises(ArtifactNotFound):
        await disk.fetch(store, "nope.tar.gz")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-gzip", "not a readable tar"),
        (tar_gz({"f": b"x"})[:30], "not a readable tar"),
        (evil_tar(tarfile.TarInfo("../escape.txt")), "outside its folder"),
        (evil_tar(tarfile.TarInfo("/abs/path.txt")), "outside its folder"),
        (evil_tar(link("innocent", "/etc/passwd")), "link pointing outside"),
        (evil_tar(link("innocent", "../../outside")), "link pointing outside"),
        (evil_tar(link("hard", "../../etc/passwd", tarfile.LNKTYPE)), "link pointing outside"),
        (evil_tar(link("fifo", "", tarfile.FIFOTYPE)), "special file"),
    ],
)
async def test_unsafe_or_corrupt_archives_are_refused(
    store: Store, disk: DiskCache, tmp_path: Path, data: bytes, message: str
) -> None:
    await store.put("bad.tar.gz", data)
    with pytest.raises(ArtifactInvalid, match=message):
        await disk.fetch(store, "bad.tar.gz")
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "outside").exists()
    assert [p.name for p in disk.root.iterdir()] == [MARKER]  # nothing half-written


async def test_tar_bomb_is_bounded(store: Store, tmp_path: Path) -> None:
    small = DiskCache(tmp_path / "disk", 10_000_000, max_unpacked=100_000)
    await store.put("bomb.tar.gz", tar_gz({f"f{i}": bytes(60_000) for i in range(3)}))  # compresses to ~1 KiB
    with pytest.raises(ArtifactInvalid, match="larger than 100000 bytes unpacked"):
        await small.fetch(store, "bomb.tar.gz")


async def test_disk_budget_evicts_least_recently_used(store: Store, tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "disk", 2_500, max_unpacked=1_000_000)
    for name in ("a", "b", "c"):
        await store.put(f"{name}.bin", bytes(1000))
        disk.release(await disk.fetch(store, f"{name}.bin"))
    assert disk.used <= 2_500
    assert len(disk) == 2
    assert disk.evictions == 1
    assert (await disk.fetch(store, "c.bin")).from_disk


async def test_leased_entries_are_not_evicted(store: Store, tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "disk", 1_500, max_unpacked=1_000_000)
    await store.put("a.bin", bytes(1000))
    await store.put("b.bin", bytes(1000))
    leased = await disk.fetch(store, "a.bin")
    await disk.fetch(store, "b.bin")
    assert leased.path.exists()


async def test_disk_cache_survives_restart(store: Store, tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "disk", 10_000, max_unpacked=1_000_000)
    await store.put("m.tar.gz", tar_gz({"f": b"abc"}))
    disk.release(await disk.fetch(store, "m.tar.gz"))
    leftover = tmp_path / "disk" / f".tmp-{'0' * 40}-12345678"  # a download cut short by a crash
    leftover.mkdir()
    reopened = DiskCache(tmp_path / "disk", 10_000, max_unpacked=1_000_000)
    assert reopened.used == 3
    assert (await reopened.fetch(store, "m.tar.gz")).from_disk
    assert not leftover.exists()


async def test_local_store_refuses_traversal(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    store = open_store(str(made(tmp_path / "store")))
    disk = DiskCache(tmp_path / "disk", 10_000, max_unpacked=1_000)
    for target in ("../secret.txt", "a/../../secret.txt"):
        with pytest.raises(InvalidTargetModel):
            await disk.fetch(store, target)


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("budget", "max_unpacked", "max_loadable", "error", "message"),
    [
        (MIB, 100 * MIB, None, ModelTooLarge, "whole disk cache budget"),
        (100 * MIB, 100 * MIB, MIB, ModelTooLarge, "whole budget of memory"),
        (100 * MIB, MIB, 100 * MIB, ArtifactInvalid, "max_unpacked"),
    ],
)
async def test_an_artifact_is_bounded_by_every_budget(
    store: Store,
    tmp_path: Path,
    budget: int,
    max_unpacked: int,
    max_loadable: int | None,
    error: type[Exception],
    message: str,
) -> None:
    loadable: dict[str, Any] = {"max_loadable": max_loadable} if max_loadable is not None else {}
    disk = DiskCache(tmp_path / "disk", budget, max_unpacked=max_unpacked, **loadable)
    await store.put("big.tar.gz", zero_bomb((("xgboost-model", 2 * MIB),)))
    await store.put("ok.tar.gz", zero_bomb((("xgboost-model", MIB // 2),)))
    with pytest.raises(error, match=message):
        await disk.fetch(store, "big.tar.gz")
    assert [p.name for p in disk.root.iterdir()] == [MARKER]
    assert (await disk.fetch(store, "ok.tar.gz")).disk_size == MIB // 2
    assert disk.limit == MIB


@pytest.mark.parametrize("name", ["model.bin", "model.tar"])
async def test_large_artifacts_stream_through_bounded_memory(tmp_path: Path, name: str) -> None:
    content = os.urandom(24 * MIB)
    store = open_store(str(made(tmp_path / "store")))
    await store.put(name, content if name == "model.bin" else tar_of({"xgboost-model": content}))
    disk = DiskCache(tmp_path / "disk", 100 * MIB, max_unpacked=100 * MIB)
    tracemalloc.start()
    try:
        artifact = await disk.fetch(store, name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB  # a few chunks, never the object
    on_disk = artifact.path / ("xgboost-model" if name == "model.tar" else name)
    assert on_disk.read_bytes() == content


async def test_a_folder_artifact_is_named_with_a_trailing_slash(store: Store, disk: DiskCache) -> None:
    await store.put("Houston/xgboost-model", b"abc")
    with pytest.raises(ArtifactNotFound, match="trailing slash: 'Houston/'") as caught:
        await disk.fetch(store, "Houston")
    assert "xgboost-model" not in caught.value.message
    assert len(disk) == 0
    assert (await disk.fetch(store, "Houston/")).disk_size == 3
    with pytest.raises(ArtifactNotFound) as absent:
        await disk.fetch(store, "Dallas")
    assert "trailing slash" not in absent.value.message


async def test_a_folder_larger_than_the_limit_is_refused_before_its_download(store: Store, tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "disk", 10 * MIB, max_unpacked=MIB)
    for i in range(3):
        await store.put(f"big/part-{i}.bin", bytes(MIB // 2))
    with pytest.raises(ArtifactInvalid, match="larger than"):
        await disk.fetch(store, "big/")
    assert [p.name for p in disk.root.iterdir()] == [MARKER]


async def test_discard_drops_an_entry_once_its_lease_ends(store: Store, disk: DiskCache) -> None:
    await store.put("m.tar.gz", tar_gz({"xgboost-model": b"abc"}))
    artifact = await disk.fetch(store, "m.tar.gz")
    assert disk.discard("m.tar.gz", artifact.version)
    assert artifact.path.exists()  # still leased by whoever is loading it
    disk.release(artifact)
    assert not artifact.path.exists()
    assert len(disk) == 0
    assert not (await disk.fetch(store, "m.tar.gz")).from_disk
    assert not disk.discard("other.tar.gz", "v1")


class RewrittenWhileRead(Store):
    """A local store whose artifact is rewritten in place right after each read opens it."""

    def __init__(self, root: Path, versions: list[bytes]) -> None:
        super().__init__(str(root), LocalStore(prefix=root))
        self.root = root
        self.versions = versions
        self.opened = 0

    async def open(self, key: str, *, inline: int) -> Any:
        opened = await super().open(key, inline=inline)
        self.opened += 1
        if self.versions:
            time.sleep(0.002)  # mtimes must differ
            (self.root / key).write_bytes(self.versions.pop(0))
        return opened


async def test_an_archive_read_while_rewritten_is_read_again(tmp_path: Path) -> None:
    complete = tar_gz({"xgboost-model": os.urandom(5000)})
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "m.tar.gz").write_bytes(complete[:3000])  # the writer is half-way
    store = RewrittenWhileRead(tmp_path / "store", [complete])
    disk = DiskCache(tmp_path / "disk", 10 * MIB, max_unpacked=MIB)
    artifact = await disk.fetch(store, "m.tar.gz")
    assert store.opened == 2
    assert (artifact.path / "xgboost-model").stat().st_size == 5000


async def test_an_archive_that_never_settles_is_a_503_not_a_400(tmp_path: Path) -> None:
    data = tar_gz({"xgboost-model": os.urandom(5000)})
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "m.tar.gz").write_bytes(data[:1000])
    store = RewrittenWhileRead(tmp_path / "store", [data[: 1000 + 500 * i] for i in range(1, 10)])
    disk = DiskCache(tmp_path / "disk", 10 * MIB, max_unpacked=MIB)
    with pytest.raises(ServiceUnavailable, match="changed while it was being read"):
        await disk.fetch(store, "m.tar.gz")


async def test_a_stable_corrupt_archive_stays_a_400(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "m.tar.gz").write_bytes(tar_gz({"xgboost-model": os.urandom(5000)})[:3000])
    store = RewrittenWhileRead(tmp_path / "store", [])
    disk = DiskCache(tmp_path / "disk", 10 * MIB, max_unpacked=MIB)
    with pytest.raises(ArtifactInvalid, match="not a readable tar archive"):
        await disk.fetch(store, "m.tar.gz")
    assert store.opened == 1


async def test_messages_name_no_host_path(tmp_path: Path) -> None:
    store = open_store(str(made(tmp_path / "store")))
    disk = DiskCache(tmp_path / "disk", 10 * MIB, max_unpacked=MIB)
    await store.put("layout.tar", tar_of({"a": b"file", "a/b": b"under a file"}))
    await store.put("corrupt.tar.gz", b"\x1f\x8b\x08\x00garbage")
    for target in ("layout.tar", "corrupt.tar.gz", "missing.tar.gz", "x" * 300 + ".tar.gz"):
        with pytest.raises(ValidationError) as caught:
            await disk.fetch(store, validate_target(target) if len(target) < 255 else target)
        assert str(tmp_path) not in caught.value.message, caught.value.message


def test_segments_no_file_system_can_hold_are_invalid_targets() -> None:
    with pytest.raises(InvalidTargetModel, match="longer than 255 bytes"):
        validate_target("a" * 256 + ".tar.gz")
    with pytest.raises(InvalidTargetModel, match="longer than 255 bytes"):
        validate_target("eu/" + "é" * 128)  # 256 bytes in UTF-8
    assert validate_target("eu/" + "a" * 255) == "eu/" + "a" * 255

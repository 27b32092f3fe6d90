from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from obstore.store import MemoryStore

from modelyard.artifacts import DiskCache, resolve_version, validate_target
from modelyard.demo import make_artifact as tar_gz
from modelyard.errors import ArtifactInvalid, ArtifactNotFound, InvalidTargetModel
from modelyard.store import Store, open_store

pytestmark = pytest.mark.anyio


def evil_tar(member: tarfile.TarInfo, content: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        member.size = len(content) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(content) if member.isfile() else None)
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
    "target", ["Houston_TX.tar.gz", "eu/de/Berlin.tar.gz", "model v2.json", "a..b.tar.gz", "x" * 1024]
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
    folder = await disk.fetch(store, "folder")
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
    assert [p.name for p in disk.root.iterdir()] == []  # nothing half-written


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
    (tmp_path / "disk" / ".tmp-leftover").mkdir()
    reopened = DiskCache(tmp_path / "disk", 10_000, max_unpacked=1_000_000)
    assert reopened.used == 3
    assert (await reopened.fetch(store, "m.tar.gz")).from_disk
    assert not (tmp_path / "disk" / ".tmp-leftover").exists()


async def test_local_store_refuses_traversal(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    store = open_store(str(tmp_path / "store"))
    disk = DiskCache(tmp_path / "disk", 10_000, max_unpacked=1_000)
    for target in ("../secret.txt", "a/../../secret.txt"):
        with pytest.raises(InvalidTargetModel):
            await disk.fetch(store, target)

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard import unpack
from modelyard.demo import make_artifact as tar_gz
from modelyard.errors import ArtifactInvalid, ArtifactUnreadable, ModelyardError
from tests.fixtures import zero_bomb

MIB = 1024 * 1024


class TooLarge(ModelyardError):
    pass


def quota(limit: int) -> unpack.Quota:
    return unpack.Quota(limit, lambda: TooLarge(f"over {limit}"))


COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "": bytes,
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
}


def tar(files: dict[str, bytes], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return COMPRESSIONS[compression](buffer.getvalue())


def streamed(data: bytes, chunk: int = 64 * 1024) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        yield view[start : start + chunk]


def written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
@pytest.mark.parametrize("whole", [True, False])
def test_archives_unpack_whole_or_streamed(tmp_path: Path, compression: str, whole: bool) -> None:
    data = tar({"xgboost-model": b"abc", "code/inference.py": b"x = 1\n"}, compression)
    content = data if whole else streamed(data, chunk=7)
    with unpack.source(content) as file:
        size = unpack.unpack("m.tar.gz", file, tmp_path, quota(1000))
    assert size == 9
    assert (tmp_path / "xgboost-model").read_bytes() == b"abc"
    assert (tmp_path / "code" / "inference.py").read_bytes() == b"x = 1\n"


def test_a_file_that_is_no_archive_is_written_as_is(tmp_path: Path) -> None:
    with unpack.source(streamed(b"{}" * 100_000)) as file:
        assert unpack.unpack("model.json", file, tmp_path, quota(1_000_000)) == 200_000
    assert (tmp_path / "model.json").read_bytes() == b"{}" * 100_000


def test_a_bomb_of_many_members_stops_at_the_limit(tmp_path: Path) -> None:
    bomb = zero_bomb(tuple((f"part-{i}", MIB) for i in range(512)))  # 512 MiB of zeros in ~0.5 MB
    assert len(bomb) < MIB
    with pytest.raises(TooLarge), unpack.source(streamed(bomb)) as file:
        unpack.unpack("bomb.tar.gz", file, tmp_path, quota(4 * MIB))
    assert written(tmp_path) <= 4 * MIB  # each member is checked against what is left before it is written


def test_a_member_declaring_more_than_the_limit_writes_nothing(tmp_path: Path) -> None:
    bomb = zero_bomb((("xgboost-model", 1024 * MIB),))
    with pytest.raises(TooLarge), unpack.source(bomb) as file:
        unpack.unpack("bomb.tar.gz", file, tmp_path, quota(4 * MIB))
    assert written(tmp_path) == 0


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress])
def test_bzip2_and_xz_bombs_are_decompressed_a_block_at_a_time(
    tmp_path: Path, compress: Callable[[bytes], bytes]
) -> None:
    # bzip2 turns 64 MiB of zeros into ~100 bytes: inflating a whole read at once would
    # take gigabytes; a bounded decompressor keeps the peak near a few blocks (plus the
    # 8 MiB dictionary of xz's default preset)
    bomb = compress(tar({f"part-{i}": bytes(MIB) for i in range(64)}))
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge), unpack.source(streamed(bomb)) as file:
            unpack.unpack("bomb.tar", file, tmp_path, quota(8 * MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB
    assert written(tmp_path) <= 8 * MIB


def test_member_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unpack, "MAX_MEMBERS", 10)
    with (
        pytest.raises(ArtifactInvalid, match="more than 10 members"),
        unpack.source(tar({f"f{i}": b"" for i in range(11)})) as file,
    ):
        unpack.unpack("m.tar", file, tmp_path, quota(1000))


def test_links_inside_the_artifact_are_kept(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("data/weights.bin")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
        for name, kind, target in (
            ("alias.bin", tarfile.SYMTYPE, "data/weights.bin"),
            ("hard.bin", tarfile.LNKTYPE, "data/weights.bin"),
        ):
            link = tarfile.TarInfo(name)
            link.type = kind
            link.linkname = target
            archive.addfile(link)
    with unpack.source(buffer.getvalue()) as file:
        unpack.unpack("m.tar.gz", file, tmp_path, quota(1000))
    assert (tmp_path / "alias.bin").is_symlink()
    assert (tmp_path / "alias.bin").read_bytes() == b"abc"
    assert (tmp_path / "hard.bin").read_bytes() == b"abc"
    assert not (tmp_path / "hard.bin").is_symlink()


def test_a_later_member_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_bytes(b"keep me")
    dest = tmp_path / "model"
    dest.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("config.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "other.json"
        archive.addfile(link)
        info = tarfile.TarInfo("config.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"{}"))
    with unpack.source(buffer.getvalue()) as file:
        unpack.unpack("m.tar", file, dest, quota(1000))
    assert not (dest / "config.json").is_symlink()
    assert (dest / "config.json").read_bytes() == b"{}"
    assert not (dest / "other.json").exists()


def test_hard_link_to_nothing_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("hard.bin")
        link.type = tarfile.LNKTYPE
        link.linkname = "missing.bin"
        archive.addfile(link)
    with pytest.raises(ArtifactInvalid, match="hard link"), unpack.source(buffer.getvalue()) as file:
        unpack.unpack("m.tar", file, tmp_path, quota(1000))


@pytest.mark.parametrize(
    "data",
    [
        tar_gz({"xgboost-model": os.urandom(4000)})[:-8],  # the gzip trailer (CRC, length) cut off
        tar_gz({"xgboost-model": os.urandom(4000)})[:-4] + b"\0\0\0\0",  # a wrong length in the trailer
        tar_gz({"xgboost-model": os.urandom(4000)})[:2000],
        b"",
    ],
)
def test_truncated_or_corrupt_archives_are_unreadable(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ArtifactUnreadable, match="not a readable tar archive"), unpack.source(data) as file:
        unpack.unpack("m.tar.gz", file, tmp_path, quota(1_000_000))


def test_a_member_the_layout_cannot_hold_is_the_artifact_fault_and_names_no_host_path(tmp_path: Path) -> None:
    data = tar({"a": b"file", "a/b": b"under a file"})
    with pytest.raises(ArtifactInvalid) as caught, unpack.source(data) as file:
        unpack.unpack("m.tar", file, tmp_path, quota(1000))
    assert "'a/b'" in caught.value.message
    assert str(tmp_path) not in caught.value.message


def test_a_refused_stream_is_closed_not_read_to_its_end(tmp_path: Path) -> None:
    pulled = 0

    def chunks() -> Iterator[memoryview]:
        nonlocal pulled
        for chunk in streamed(zero_bomb((("xgboost-model", 64 * MIB),)) + bytes(10 * MIB), chunk=1024):
            pulled += 1
            yield chunk

    stream = chunks()
    with pytest.raises(TooLarge), unpack.source(stream) as file:
        unpack.unpack("bomb.tar.gz", file, tmp_path, quota(MIB))
    assert pulled < 1000
    with pytest.raises(StopIteration):
        next(stream)  # closed

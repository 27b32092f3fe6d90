from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from obstore.store import MemoryStore

from modelyard.artifacts import DiskCache
from modelyard.demo import make_artifact as tar_gz
from modelyard.diskroot import MARKER, Health
from modelyard.errors import DiskUnavailable, ValidationError
from modelyard.store import Store

pytestmark = pytest.mark.anyio


def cache(root: Path, store_root: Path | None = None) -> DiskCache:
    if store_root is None:
        return DiskCache(root, 10_000_000, max_unpacked=1_000_000)
    return DiskCache(root, 10_000_000, max_unpacked=1_000_000, store_root=store_root)


@pytest.fixture
def store() -> Store:
    return Store("memory://test", MemoryStore())


def test_a_folder_holding_other_things_is_refused_and_left_intact(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    (folder / "important").mkdir(parents=True)
    (folder / "important" / "notes.txt").write_text("keep")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    with pytest.raises(ValidationError, match="not a modelyard disk cache"):
        cache(folder)
    assert (folder / "important" / "notes.txt").read_text() == "keep"
    assert (folder / ".git" / "HEAD").exists()
    assert not (folder / MARKER).exists()


def test_a_new_or_empty_folder_is_claimed(tmp_path: Path) -> None:
    cache(tmp_path / "new" / "cache")
    assert (tmp_path / "new" / "cache" / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    cache(tmp_path / "empty")
    assert (tmp_path / "empty" / MARKER).is_file()


@pytest.mark.parametrize(("cache_in", "store_in"), [("models/cache", "models"), ("cache", "cache/models")])
def test_a_cache_overlapping_a_local_store_is_refused(tmp_path: Path, cache_in: str, store_in: str) -> None:
    (tmp_path / store_in).mkdir(parents=True)
    (tmp_path / store_in / "Houston_TX.tar.gz").write_bytes(b"an artifact")
    with pytest.raises(ValidationError, match="overlap"):
        cache(tmp_path / cache_in, store_root=tmp_path / store_in)
    assert (tmp_path / store_in / "Houston_TX.tar.gz").read_bytes() == b"an artifact"


async def test_restart_reindexes_entries_and_leaves_unknown_files_alone(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "cache"
    first = cache(root)
    await store.put("m.tar.gz", tar_gz({"xgboost-model": b"abc"}))
    first.release(await first.fetch(store, "m.tar.gz"))
    (root / "notes.txt").write_text("mine")
    (root / "mine").mkdir()
    (root / ".tmp-mine").mkdir()
    reopened = cache(root)
    assert len(reopened) == 1
    assert (await reopened.fetch(store, "m.tar.gz")).from_disk
    assert (root / "notes.txt").read_text() == "mine"
    assert (root / "mine").is_dir()
    assert (root / ".tmp-mine").is_dir()


async def test_a_cache_made_before_the_marker_is_adopted(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "cache"
    first = cache(root)
    await store.put("m.tar.gz", tar_gz({"xgboost-model": b"abc"}))
    first.release(await first.fetch(store, "m.tar.gz"))
    (root / MARKER).unlink()  # as an earlier modelyard left it
    reopened = cache(root)
    assert (await reopened.fetch(store, "m.tar.gz")).from_disk
    assert (root / MARKER).is_file()


def test_a_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DiskUnavailable, match="cannot be used"):
        cache(tmp_path / "file" / "cache")
    with pytest.raises(ValidationError, match="not a folder"):
        cache(tmp_path / "file")


def test_health_follows_writes_and_probes(tmp_path: Path) -> None:
    now = [0.0]
    root = tmp_path / "cache"
    root.mkdir()
    health = Health(root, interval=5.0, clock=lambda: now[0])
    assert health.problem() is None
    health.failed("Read-only file system")
    assert health.problem() == "Read-only file system"
    now[0] = 10.0  # the next look probes the folder, which can be written
    assert health.problem() is None
    shutil.rmtree(root)
    root.write_text("a file where the folder was")
    now[0] = 20.0
    assert health.problem() is not None
    now[0] = 22.0
    root.unlink()
    assert health.problem() is not None  # not probed again yet
    now[0] = 30.0
    assert health.problem() is None  # the folder is made again, with its marker
    assert (root / MARKER).is_file()

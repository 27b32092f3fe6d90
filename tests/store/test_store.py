from __future__ import annotations

import asyncio
from pathlib import Path

import obstore
import pytest

from modelyard.errors import ArtifactNotFound, InvalidTargetModel, ValidationError
from modelyard.store import Store, open_store
from tests.conftest import SeaweedS3
from tests.fixtures import made

pytestmark = pytest.mark.anyio


async def exercise(store: Store) -> None:
    first = await store.put("eu/de/Berlin.tar.gz", b"v1")
    assert first.size == 2
    assert (await store.head("eu/de/Berlin.tar.gz")).version == first.version
    info, data = await store.get("eu/de/Berlin.tar.gz")
    assert (info.version, data) == (first.version, b"v1")
    second = await store.put("eu/de/Berlin.tar.gz", b"v2-longer")
    assert second.version != first.version
    await store.put("eu/fr/Paris.tar.gz", b"p")
    assert [o.key for o in await store.list("eu/")] == ["eu/de/Berlin.tar.gz", "eu/fr/Paris.tar.gz"]
    with pytest.raises(ArtifactNotFound):
        await store.head("eu/it/Rome.tar.gz")
    with pytest.raises(ArtifactNotFound):
        await store.get("eu/it/Rome.tar.gz")
    await store.delete("eu/fr/Paris.tar.gz")
    await store.delete("eu/fr/Paris.tar.gz")
    assert [o.key for o in await store.list("eu/")] == ["eu/de/Berlin.tar.gz"]
    big = bytes(range(256)) * 2048  # 512 KiB, read as a stream of chunks on a worker thread
    await store.put("big.bin", big)
    info, content = await store.open("big.bin", inline=1000)
    assert info.size == len(big)
    assert not isinstance(content, bytes)
    assert await asyncio.to_thread(lambda: b"".join(bytes(chunk) for chunk in content)) == big
    assert await store.any_under("eu/")
    assert not await store.any_under("us/")


async def test_local_folder(tmp_path: Path) -> None:
    await exercise(open_store(str(made(tmp_path / "models"))))
    assert (tmp_path / "models" / "eu" / "de" / "Berlin.tar.gz").read_bytes() == b"v2-longer"


async def test_file_url(tmp_path: Path) -> None:
    await exercise(open_store(f"file://{made(tmp_path / 'models')}"))


async def test_memory_store_is_shared_by_name() -> None:
    store = open_store("memory://shared-test")
    await exercise(store)
    assert (await open_store("memory://shared-test").get("eu/de/Berlin.tar.gz"))[1] == b"v2-longer"
    with pytest.raises(ArtifactNotFound):
        await open_store("memory://other-test").head("eu/de/Berlin.tar.gz")


async def test_s3_on_seaweedfs(seaweed: SeaweedS3) -> None:
    bucket = seaweed.bucket()
    store = open_store(f"s3://{bucket}/prefix/", seaweed.store_options())
    await exercise(store)
    body = seaweed.client.get_object(Bucket=bucket, Key="prefix/eu/de/Berlin.tar.gz")["Body"].read()
    assert body == b"v2-longer"


async def test_traversal_is_refused_by_the_store(tmp_path: Path) -> None:
    store = open_store(str(made(tmp_path / "models")))
    with pytest.raises(InvalidTargetModel):
        await store.head("../outside")


def test_unknown_scheme() -> None:
    with pytest.raises(ValidationError, match="Unsupported store URL"):
        open_store("ftp://host/models")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the store, with a secret file and a subfolder the store may link to."""
    folder = tmp_path / "outside"
    (folder / "dir").mkdir(parents=True)
    (folder / "secret.txt").write_bytes(b"secret")
    (folder / "dir" / "model.bin").write_bytes(b"not yours")
    return folder


async def test_links_out_of_a_local_store_are_not_followed(tmp_path: Path, outside: Path) -> None:
    root = made(tmp_path / "models")
    store = open_store(str(root))
    await store.put("real.bin", b"mine")
    (root / "sub").mkdir()
    (root / "escape.bin").symlink_to(outside / "secret.txt")
    (root / "linked").symlink_to(outside / "dir")
    (root / "sub" / "up.bin").symlink_to("../../outside/secret.txt")
    for key in ("escape.bin", "linked/model.bin", "sub/up.bin"):
        with pytest.raises(ArtifactNotFound) as caught:
            await store.head(key)
        assert str(tmp_path) not in caught.value.message
        with pytest.raises(ArtifactNotFound):
            await store.get(key)
    assert [o.key for o in await store.list()] == ["real.bin"]
    assert await store.list("linked/") == []
    assert not await store.any_under("linked/")


async def test_links_inside_a_local_store_are_followed(tmp_path: Path) -> None:
    root = made(tmp_path / "models")
    store = open_store(str(root))
    await store.put("v2/model.bin", b"mine")
    (root / "latest.bin").symlink_to("v2/model.bin")
    (root / "current").symlink_to(root / "v2")
    assert (await store.get("latest.bin"))[1] == b"mine"
    assert (await store.get("current/model.bin"))[1] == b"mine"
    assert (await store.head("latest.bin")).size == 4
    assert [o.key for o in await store.list()] == ["current/model.bin", "latest.bin", "v2/model.bin"]


async def test_a_link_swapped_after_its_check_is_refused(tmp_path: Path, outside: Path) -> None:
    root = made(tmp_path / "models")
    store = open_store(str(root))
    await store.put("real.bin", b"mine")
    await store.put("model.bin", b"mine too")
    assert store.local is not None
    checked = store.local.check("model.bin")  # what head/get see before the backend opens the file
    (root / "model.bin").unlink()
    (root / "model.bin").symlink_to(outside / "secret.txt")
    meta = obstore.head(store.backend, "model.bin")  # the backend follows the swapped link
    with pytest.raises(ArtifactNotFound):
        store.local.verify("model.bin", checked, meta)


async def test_local_store_errors_name_no_host_path(tmp_path: Path) -> None:
    root = made(tmp_path / "models")
    store = open_store(str(root))
    await store.put("file.bin", b"x")
    with pytest.raises(ArtifactNotFound) as missing:
        await store.head("file.bin/under-a-file")  # ENOTDIR: absent, not a store failure
    with pytest.raises(InvalidTargetModel) as long_name:
        await store.head("a" * 300)
    for error in (missing.value, long_name.value):
        assert str(tmp_path) not in error.message


async def test_streamed_reads(tmp_path: Path) -> None:
    store = open_store(str(made(tmp_path / "models")))
    data = bytes(range(256)) * 4096  # 1 MiB
    await store.put("big.bin", data)
    info, content = await store.open("big.bin", inline=1000)
    assert info.size == len(data)
    assert not isinstance(content, bytes)
    assert b"".join(bytes(chunk) for chunk in content) == data
    info, small = await store.open("big.bin", inline=len(data))
    assert small == data


def test_a_missing_folder_is_refused_never_created(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        open_store(str(tmp_path / "mistyped"))
    assert not (tmp_path / "mistyped").exists()

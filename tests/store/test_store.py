from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ArtifactNotFound, InvalidTargetModel, ValidationError
from modelyard.store import Store, open_store
from tests.conftest import SeaweedS3

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


async def test_local_folder(tmp_path: Path) -> None:
    await exercise(open_store(str(tmp_path / "models")))
    assert (tmp_path / "models" / "eu" / "de" / "Berlin.tar.gz").read_bytes() == b"v2-longer"


async def test_file_url(tmp_path: Path) -> None:
    await exercise(open_store(f"file://{tmp_path}/models"))


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
    store = open_store(str(tmp_path / "models"))
    with pytest.raises(InvalidTargetModel):
        await store.head("../outside")


def test_unknown_scheme() -> None:
    with pytest.raises(ValidationError, match="Unsupported store URL"):
        open_store("ftp://host/models")

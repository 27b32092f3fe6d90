"""Artifacts and the disk tier against a real server: bombs, races, links, paths, a broken disk."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from modelyard import sizing
from modelyard.demo import make_artifact as tar_gz
from modelyard.diskroot import MARKER
from modelyard.errors import ValidationError
from modelyard.server.run import BackgroundServer
from tests.conftest import aws_client, runtime_client
from tests.fixtures import INFERENCE_PY, ROW, booster_bytes, xgb_artifact, xgb_predict, zero_bomb

MIB = 1024 * 1024
EXPECTED = float(xgb_predict(booster_bytes(0), np.array([[1994, 3188, 5, 1.5, 1.62, 3]], dtype=np.float32))[0])


def invoke(client: Any, target: str) -> float:
    response = client.invoke_endpoint(EndpointName="modelyard", TargetModel=target, ContentType="text/csv", Body=ROW)
    return float(response["Body"].read())


def refused(client: Any, target: str) -> tuple[int, str, str]:
    """Status, error code and message of an invocation that must fail."""
    with pytest.raises(ClientError) as caught:
        invoke(client, target)
    error = caught.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], error["Error"]["Message"]


def ping(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


@pytest.mark.parametrize(
    "members",
    [
        (("xgboost-model", 2048 * MIB),),  # one model file of 2 GiB
        tuple((f"part-{i:03d}.bin", 8 * MIB) for i in range(256)),  # 2 GiB in files each under the limit
    ],
    ids=["one-huge-member", "many-members"],
)
def test_a_decompression_bomb_is_refused_at_once(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path, members: tuple[tuple[str, int], ...]
) -> None:
    bomb = zero_bomb(members)
    assert len(bomb) < 4 * MIB
    (store_dir / "bomb.tar.gz").write_bytes(bomb)
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir, memory="16MiB")  # 4 × 16 MiB: nothing may unpack past 64 MiB
    client = runtime_client(server.url)
    gc.collect()
    before = sizing.rss_bytes()
    status, code, message = refused(client, "bomb.tar.gz")
    grown = sizing.rss_bytes() - before
    assert grown < 32 * MIB, f"RSS grew {grown / MIB:.0f} MiB"
    assert (status, code) == (400, "ValidationError")
    assert f"larger than {64 * MIB} bytes unpacked" in message
    assert str(tmp_path) not in message
    assert entries(tmp_path / "disk-cache-0") == []  # nothing of it left on disk
    assert invoke(client, "Houston_TX.tar.gz") == pytest.approx(EXPECTED)


def test_a_refused_model_file_does_not_stay_in_memory(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    # 192 MiB of zeros: under the 256 MiB limit of a 64 MiB budget, so XGBoost reads it, then refuses it
    (store_dir / "junk.tar.gz").write_bytes(zero_bomb((("xgboost-model", 192 * MIB),)))
    server = serve(store_dir, memory="64MiB")
    client = runtime_client(server.url)
    gc.collect()
    gc.disable()  # the error's reference cycles are not collected: nothing may hang on them
    try:
        before = sizing.rss_bytes()
        status, _, message = refused(client, "junk.tar.gz")
        grown = sizing.rss_bytes() - before
    finally:
        gc.enable()
    assert status == 400
    assert "not a valid XGBoost model" in message
    assert grown < 32 * MIB, f"RSS grew {grown / MIB:.0f} MiB"


def test_an_artifact_that_cannot_load_leaves_the_disk_tier(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "readme.tar.gz").write_bytes(tar_gz({"README.txt": b"no model here"}))
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir)
    client = runtime_client(server.url)
    assert refused(client, "readme.tar.gz")[:2] == (400, "ValidationError")
    assert entries(tmp_path / "disk-cache-0") == []
    assert invoke(client, "Houston_TX.tar.gz") == pytest.approx(EXPECTED)
    assert len(entries(tmp_path / "disk-cache-0")) == 1


def test_an_artifact_rewritten_in_place_is_never_a_client_error(
    serve: Callable[..., BackgroundServer], store_dir: Path
) -> None:
    path = store_dir / "Houston_TX.tar.gz"
    data = xgb_artifact(0)
    path.write_bytes(data)
    # unloaded after every request, and the store asked for the version at every load
    server = serve(store_dir, model_cache="Disabled", version_check_interval=0)
    client = runtime_client(server.url)
    stop = threading.Event()

    def rewrite() -> None:  # a plain copy over the old file, as cp or a sync tool does it
        while not stop.is_set():
            with path.open("wb") as file:
                for start in range(0, len(data), 2048):
                    file.write(data[start : start + 2048])
                    file.flush()
                    time.sleep(0.002)
            time.sleep(0.01)

    writer = threading.Thread(target=rewrite)
    writer.start()
    outcomes: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and len(outcomes) < 400:
            try:
                assert invoke(client, "Houston_TX.tar.gz") == pytest.approx(EXPECTED)
                outcomes.append((200, ""))
            except ClientError as error:
                answer = error.response
                outcomes.append((answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Message"]))
    finally:
        stop.set()
        writer.join()
    assert [o for o in outcomes if o[0] not in (200, 503)] == []  # never a 400: the artifact is fine
    assert (200, "") in outcomes


def test_targets_and_lookups(serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path) -> None:
    (store_dir / "Houston").mkdir()
    (store_dir / "Houston" / "xgboost-model").write_bytes(booster_bytes(0))
    (store_dir / "layout.tar.gz").write_bytes(tar_gz({"a": b"file", "a/b": b"under a file"}))
    (store_dir / "corrupt.tar.gz").write_bytes(b"\x1f\x8b\x08\x00this is not gzip data")
    server = serve(store_dir)
    client = runtime_client(server.url)
    status, code, message = refused(client, "Houston")
    assert (status, code) == (400, "ValidationError")
    assert "trailing slash: 'Houston/'" in message
    assert invoke(client, "Houston/") == pytest.approx(EXPECTED)
    for target in ("a" * 300 + ".tar.gz", "eu/" + "b" * 256):  # no file name can be that long
        assert refused(client, target)[:2] == (400, "ValidationError")
    for target in ("Dallas_TX.tar.gz", "layout.tar.gz", "corrupt.tar.gz", "Houston/missing/"):
        status, _, message = refused(client, target)
        assert status == 400
        assert str(tmp_path) not in message, message


def test_model_fn_errors_name_no_host_path(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    missing = INFERENCE_PY.replace(b'"weights.json"', b'"missing.json"')
    (store_dir / "code.tar.gz").write_bytes(tar_gz({"code/inference.py": missing}))
    server = serve(store_dir, trust_store=True)
    status, _, message = refused(runtime_client(server.url), "code.tar.gz")
    assert status == 424
    assert "missing.json" in message
    assert str(tmp_path) not in message


def test_links_never_lead_out_of_the_store(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "models").mkdir(parents=True)
    (outside / "Secret.tar.gz").write_bytes(xgb_artifact(1))
    (outside / "models" / "Secret.tar.gz").write_bytes(xgb_artifact(1))
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (store_dir / "Latest.tar.gz").symlink_to("Houston_TX.tar.gz")  # stays inside: served
    (store_dir / "Secret.tar.gz").symlink_to(outside / "Secret.tar.gz")
    (store_dir / "shared").symlink_to(outside / "models")
    server = serve(store_dir)
    client = runtime_client(server.url)
    assert invoke(client, "Latest.tar.gz") == pytest.approx(EXPECTED)
    for target in ("Secret.tar.gz", "shared/Secret.tar.gz", "shared/"):
        status, _, message = refused(client, target)
        assert status == 400
        assert "Could not find model data" in message
        assert str(tmp_path) not in message


def test_a_disk_cache_folder_that_is_not_modelyards_is_refused(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "eu" / "de").mkdir(parents=True)
    (store_dir / "eu" / "de" / "Berlin.tar.gz").write_bytes(xgb_artifact(0))
    project = tmp_path / "project"
    (project / "important").mkdir(parents=True)
    (project / ".git").mkdir()
    for folder, message in ((project, "not a modelyard disk cache"), (store_dir, "overlap")):
        with pytest.raises(ValidationError, match=message):
            serve(store_dir, disk_cache=folder)
    assert (project / "important").is_dir()
    assert (project / ".git").is_dir()
    assert (store_dir / "eu" / "de" / "Berlin.tar.gz").is_file()
    with pytest.raises(ValidationError, match="overlap"):
        serve(store_dir, disk_cache=store_dir / "cache")
    assert not (store_dir / "cache").exists()


def test_a_disk_cache_that_cannot_be_written_is_a_503_and_fails_the_health_check(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (store_dir / "Chicago_IL.tar.gz").write_bytes(xgb_artifact(1))
    server = serve(store_dir)
    client = runtime_client(server.url)
    assert invoke(client, "Houston_TX.tar.gz") == pytest.approx(EXPECTED)
    folder = tmp_path / "disk-cache-0"
    shutil.rmtree(folder)
    folder.write_text("the folder was replaced by a file")  # fails every write, root or not
    status, code, message = refused(client, "Chicago_IL.tar.gz")
    assert (status, code) == (503, "ServiceUnavailable")
    assert "disk cache cannot be written" in message
    assert str(tmp_path) not in message
    status, body = ping(server.url)
    assert status == 503
    assert "disk cache of endpoint modelyard cannot be written" in body
    assert invoke(client, "Houston_TX.tar.gz") == pytest.approx(EXPECTED)  # resident models keep serving
    folder.unlink()
    folder.mkdir()
    assert server.endpoint is not None
    server.endpoint.cache.disk.health.interval = 0.0  # probe at the next look, not a few seconds later
    assert ping(server.url)[0] == 200
    assert invoke(client, "Chicago_IL.tar.gz") > 0


def test_a_control_plane_endpoint_disk_cache_is_in_the_health_check(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    sm.create_model(
        ModelName="houses-model",
        ExecutionRoleArn="arn:aws:iam::000000000000:role/sagemaker",
        Containers=[{"Image": "xgboost", "ModelDataUrl": str(store_dir), "Mode": "MultiModel"}],
    )
    sm.create_endpoint_config(
        EndpointConfigName="houses-config",
        ProductionVariants=[
            {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1, "ModelName": "houses-model", "VariantName": "A"}
        ],
    )
    sm.create_endpoint(EndpointName="houses", EndpointConfigName="houses-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})
    folder = tmp_path / "data-0" / "cache" / "houses" / "A" / "0"
    shutil.rmtree(folder)
    folder.write_text("no longer a folder")
    client = runtime_client(server.url)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="houses", TargetModel="Houston_TX.tar.gz", Body=ROW)
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"
    status, body = ping(server.url)
    assert status == 503
    assert "endpoint houses (variant A, instance 0)" in body
    folder.unlink()
    assert server.control is not None
    deployment = server.control.registry.get("houses")
    assert deployment is not None
    deployment.instances()[0].cache.disk.health.interval = 0.0
    assert ping(server.url)[0] == 200
    assert (folder / MARKER).is_file()  # made again, as modelyard's
    client.invoke_endpoint(EndpointName="houses", TargetModel="Houston_TX.tar.gz", Body=ROW)

"""The control plane cannot be turned against the server: trust, folders, key scopes, ghosts, leftovers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from modelyard.server.run import BackgroundServer
from tests.conftest import aws_client, runtime_client
from tests.fixtures import ROW, inference_artifact, xgb_artifact
from tests.server.test_control_api import FAST, NO_RETRIES, control, create, invoke


def _code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def _message(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Message"])


def test_trust_cannot_be_granted_through_the_api(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    """A caller cannot make the server run an artifact's code: trust is the operator's alone."""
    (store_dir / "code.tar.gz").write_bytes(inference_artifact())
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    container = {"Image": "python", "ModelDataUrl": str(store_dir), "Mode": "MultiModel"}
    with pytest.raises(ClientError) as caught:
        sm.create_model(ModelName="code", Containers=[container | {"Environment": {"MODELYARD_TRUST_STORE": "true"}}])
    assert _code(caught) == "ValidationException"
    assert "only the operator who starts the server can set it" in _message(caught)
    create(sm, "code", str(store_dir), image="python", count=1)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="code", WaiterConfig=FAST)
    with pytest.raises(ClientError) as caught:
        invoke(runtime_client(server.url), "code", "code.tar.gz")
    assert _code(caught) == "ValidationError"
    assert "trusted store" in _message(caught) or "--trust-store" in _message(caught)


def test_the_operator_trusts_stores_by_prefix(serve: Callable[..., BackgroundServer], tmp_path: Path) -> None:
    trusted, other = tmp_path / "trusted", tmp_path / "other"
    for folder in (trusted, other):
        folder.mkdir()
        (folder / "code.tar.gz").write_bytes(inference_artifact())
    server = serve(None, trusted_stores=[str(trusted)])
    sm = aws_client("sagemaker", server.url)
    create(sm, "yes", str(trusted), image="python", count=1)
    create(sm, "no", str(other), image="python", count=1)
    for name in ("yes", "no"):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    client = runtime_client(server.url)
    answer = client.invoke_endpoint(EndpointName="yes", TargetModel="code.tar.gz", ContentType="text/csv", Body=ROW)
    assert "prices" in json.loads(answer["Body"].read())
    with pytest.raises(ClientError):
        invoke(client, "no", "code.tar.gz")


def test_local_model_data_must_lie_in_allowed_folders(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = store_dir / "out"
    link.symlink_to(elsewhere)  # a link inside an allowed folder does not lead out of it
    server = serve(None, model_roots=[store_dir])
    sm = aws_client("sagemaker", server.url)
    for url in (str(elsewhere), str(store_dir / ".." / "elsewhere"), str(link), f"file://{elsewhere}", "/etc"):
        with pytest.raises(ClientError) as caught:
            sm.create_model(ModelName="m", Containers=[{"ModelDataUrl": url, "Mode": "MultiModel"}])
        assert "outside the ones this server may serve" in _message(caught), url
    create(sm, "inside", str(store_dir), count=1)  # the allowed folder itself, and an S3 prefix, are fine
    sm.create_model(ModelName="s3", Containers=[{"ModelDataUrl": "s3://bucket/models/", "Mode": "MultiModel"}])


def test_environment_sets_only_instance_settings_and_memory_is_honoured(
    serve: Callable[..., BackgroundServer], store_dir: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    refused = {
        "MODELYARD_DISK_CACHE": "/",
        "MODELYARD_DATA_DIR": "/tmp",
        "MODELYARD_STORE_OPTIONS": "{}",
        "MODELYARD_HOST": "0.0.0.0",
        "MODELYARD_ACCESS_KEYS": "[]",
        "MODELYARD_FRAMEWORK": "python",
        "MODELYARD_MEMORY": "lots",
        "MODELYARD_UNKNOWN": "1",
    }
    for key, value in refused.items():
        container = {"ModelDataUrl": str(store_dir), "Mode": "MultiModel", "Environment": {key: value}}
        with pytest.raises(ClientError) as caught:
            sm.create_model(ModelName="m", Containers=[container])
        assert _code(caught) == "ValidationException", key
        assert key in _message(caught)
    container = {
        "Image": "xgboost",
        "ModelDataUrl": str(store_dir),
        "Mode": "MultiModel",
        "Environment": {"MODELYARD_MEMORY": "100MiB", "MODELYARD_EVICTION": "lru", "SAGEMAKER_PROGRAM": "x"},
    }
    sm.create_model(ModelName="houses-model", Containers=[container])
    variant = {"VariantName": "AllTraffic", "ModelName": "houses-model", "InstanceType": "ml.m4.xlarge"}
    sm.create_endpoint_config(EndpointConfigName="houses-config", ProductionVariants=[variant])
    sm.create_endpoint(EndpointName="houses", EndpointConfigName="houses-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="houses", WaiterConfig=FAST)
    assert server.control is not None
    deployment = server.control.registry.get("houses")
    assert deployment is not None
    instance = deployment.instances()[0]
    assert (instance.cache.budget, instance.settings.eviction) == (100 * 1024**2, "lru")
    huge = container | {"Environment": {"MODELYARD_MEMORY": "1TiB"}}
    sm.create_model(ModelName="huge", Containers=[huge])
    with pytest.raises(ClientError) as caught:
        sm.create_endpoint_config(
            EndpointConfigName="huge",
            ProductionVariants=[variant | {"ModelName": "huge", "InstanceType": "ml.t2.medium"}],
        )
    assert "MODELYARD_MEMORY" in _message(caught)


@pytest.fixture
def scoped(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    keys = [
        {"id": "ADMIN", "secret": "admin-secret"},
        {"id": "TEAMA", "secret": "team-a-secret", "endpoints": ["team-a-*"]},
    ]
    return serve(None, access_keys=keys)


def test_a_scoped_key_acts_only_on_its_resources(scoped: BackgroundServer, store_dir: Path) -> None:
    admin = control(scoped.url, "ADMIN", "admin-secret")
    team = control(scoped.url, "TEAMA", "team-a-secret")
    create(admin, "team-b-prod", str(store_dir), count=1)
    create(team, "team-a-prod", str(store_dir), count=1)
    for name in ("team-b-prod", "team-a-prod"):
        admin.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    attempts: list[Callable[[], Any]] = [
        lambda: team.delete_endpoint(EndpointName="team-b-prod"),
        lambda: team.describe_endpoint(EndpointName="team-b-prod"),
        lambda: team.update_endpoint(EndpointName="team-b-prod", EndpointConfigName="team-a-prod-config"),
        lambda: team.update_endpoint(EndpointName="team-a-prod", EndpointConfigName="team-b-prod-config"),
        lambda: team.delete_model(ModelName="team-b-prod-model"),
        lambda: team.describe_endpoint_config(EndpointConfigName="team-b-prod-config"),
        lambda: team.delete_endpoint_config(EndpointConfigName="team-b-prod-config"),
        lambda: team.create_endpoint(EndpointName="team-a-stolen", EndpointConfigName="team-b-prod-config"),
        lambda: team.create_model(ModelName="team-b-x", Containers=[{"ModelDataUrl": "s3://b/", "Mode": "MultiModel"}]),
        lambda: team.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:endpoint/team-b-prod"),
        lambda: team.add_tags(
            ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:endpoint/team-b-prod",
            Tags=[{"Key": "k", "Value": "v"}],
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as caught:
            attempt()
        assert _code(caught) == "AccessDeniedException"
    assert [e["EndpointName"] for e in team.list_endpoints()["Endpoints"]] == ["team-a-prod"]
    assert [m["ModelName"] for m in team.list_models()["Models"]] == ["team-a-prod-model"]
    assert admin.describe_endpoint(EndpointName="team-b-prod")["EndpointStatus"] == "InService"
    team.delete_endpoint(EndpointName="team-a-prod")
    with pytest.raises(ClientError):
        invoke(
            aws_client("sagemaker-runtime", scoped.url, NO_RETRIES, key="TEAMA", secret="team-a-secret"),
            "team-b-prod",
            "Houston_TX.tar.gz",
        )


def test_an_open_control_plane_is_said_loudly(
    serve: Callable[..., BackgroundServer], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelyard"):
        serve(None)
    assert any("control plane is open to every" in r.getMessage() for r in caplog.records)


def test_deleted_endpoints_never_come_back(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    """Create then delete at once: no ghost keeps answering, and nothing is left on disk."""
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    data = tmp_path / "state"
    server = serve(None, data_dir=data)
    sm = aws_client("sagemaker", server.url)
    names = [f"ghost-{i}" for i in range(5)]
    for name in names:
        create(sm, name, str(store_dir), count=2)
        sm.delete_endpoint(EndpointName=name)
    for name in names:
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST)
    time.sleep(0.5)  # any deployment still under way would have registered by now
    client = runtime_client(server.url)
    for name in names:
        with pytest.raises(ClientError) as caught:
            invoke(client, name, "Houston_TX.tar.gz")
        assert "not found" in _message(caught)
    assert server.control is not None
    assert server.control.registry.all() == []
    create(sm, "kept", str(store_dir), count=1)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="kept", WaiterConfig=FAST)
    invoke(client, "kept", "Houston_TX.tar.gz")
    sm.delete_endpoint(EndpointName="kept")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="kept", WaiterConfig=FAST)
    caches = data / "cache"
    assert not caches.exists() or list(caches.iterdir()) == []


def test_a_restart_removes_the_caches_of_endpoints_gone_meanwhile(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    data = tmp_path / "state"
    first = serve(None, data_dir=data)
    sm = aws_client("sagemaker", first.url)
    for name in ("kept", "dropped"):
        create(sm, name, str(store_dir), count=1)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
        invoke(runtime_client(first.url), name, "Houston_TX.tar.gz")
    first.stop()
    assert first.control is not None
    first.control.catalog.__init__(data / "control.sqlite3")  # type: ignore[misc]
    first.control.catalog.delete("endpoint", "dropped")  # as if it had been deleted while the server was down
    first.control.catalog.close()
    (data / "cache" / "notes").mkdir()  # not modelyard's: never removed
    second = serve(None, data_dir=data)
    aws_client("sagemaker", second.url).get_waiter("endpoint_in_service").wait(EndpointName="kept", WaiterConfig=FAST)
    assert sorted(p.name for p in (data / "cache").iterdir()) == ["kept", "notes"]

"""`modelyard serve` without a store (control plane only), a config file declaring an
endpoint, and `modelyard endpoint` commands against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelyard.cli import main
from tests.conftest import aws_client, runtime_client
from tests.fixtures import ROW, xgb_artifact


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    store = tmp_path / "store"
    store.mkdir()
    (store / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    config = tmp_path / "modelyard.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[[endpoints]]
name = "declared"
model_data_url = "{store}"
image = "xgboost"
instance_type = "ml.m5.large"
instance_count = 2
"""
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env={**os.environ},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=30)


def run(url: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["endpoint", "--url", url, *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_declared_endpoint_and_cli_commands(server: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while "InService" not in run(server, "list"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "declared" in run(server, "list")
    client = runtime_client(server)
    answer = client.invoke_endpoint(
        EndpointName="declared", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW
    )
    assert float(answer["Body"].read()) > 0

    created = run(server, "create", "second", "--model-data-url", str(tmp_path / "store"), "--instance-count", "1")
    assert '"EndpointStatus": "InService"' in created
    assert "second" in run(server, "list")
    assert '"CurrentInstanceCount": 1' in run(server, "describe", "second")
    assert "Deleted second (endpoint, endpoint config, model)." in run(server, "delete", "second", "--all")
    assert "second" not in run(server, "list")


def test_cli_errors_are_one_line(server: str) -> None:
    result = CliRunner().invoke(main, ["endpoint", "--url", server, "describe", "nope"])
    assert result.exit_code == 1
    assert (
        'ValidationException: Could not find endpoint "arn:aws:sagemaker:us-east-1:000000000000:endpoint/nope"'
        in result.output
    )
    result = CliRunner().invoke(main, ["endpoint", "--url", "http://127.0.0.1:9", "list"])
    assert result.exit_code == 1
    assert "No server answers" in result.output
    assert "Traceback" not in result.output


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["endpoint", "--url", url, *args])


def test_a_failed_create_leaves_nothing_behind_so_the_retry_works(server: str, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    failed = invoke(server, "create", "retry", "--model-data-url", store, "--instance-type", "ml.nope.large")
    assert failed.exit_code == 1, failed.output
    created = invoke(server, "create", "retry", "--model-data-url", store)
    assert created.exit_code == 0, created.output  # not "Cannot create already existing model"
    assert '"EndpointStatus": "InService"' in created.output
    assert "nothing was left behind" in failed.output
    assert "Traceback" not in failed.output


def test_an_endpoint_that_fails_is_rolled_back_with_its_reason(server: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "store" / "no-such-folder")
    failed = invoke(server, "create", "broken", "--model-data-url", missing)
    assert failed.exit_code == 1, failed.output
    assert "Endpoint broken failed:" in failed.output
    assert "broken" not in run(server, "list")
    assert "Could not find" in invoke(server, "describe", "broken").output
    created = invoke(server, "create", "broken", "--model-data-url", str(tmp_path / "store"))
    assert created.exit_code == 0, created.output


def test_a_relative_model_data_url_is_the_callers_folder(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the server runs elsewhere: the relative path must not be resolved there
    created = invoke(server, "create", "relative", "--model-data-url", "store")
    assert created.exit_code == 0, created.output
    described = json.loads(invoke(server, "describe", "relative").stdout)
    assert described["EndpointStatus"] == "InService"
    model = runtime_client(server).invoke_endpoint(
        EndpointName="relative", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW
    )
    assert float(model["Body"].read()) > 0


def test_create_shows_each_status_while_it_waits(server: str, tmp_path: Path) -> None:
    created = invoke(server, "create", "watched", "--model-data-url", str(tmp_path / "store"))
    assert created.exit_code == 0, created.output
    progress = [line for line in created.stderr.splitlines() if line.startswith("Endpoint watched:")]
    assert progress[-1].endswith("InService")
    assert len(progress) >= 2  # the start, then each status the endpoint went through
    assert json.loads(created.stdout)["EndpointStatus"] == "InService"  # stdout stays JSON


def test_delete_all_cleans_up_what_a_failed_create_left(server: str, tmp_path: Path) -> None:
    sm = aws_client("sagemaker", server)
    sm.create_model(
        ModelName="leftover",
        PrimaryContainer={"Image": "xgboost", "ModelDataUrl": str(tmp_path / "store"), "Mode": "MultiModel"},
    )
    result = invoke(server, "delete", "leftover", "--all")
    assert result.exit_code == 0, result.output
    assert "Deleted leftover (model)." in result.output
    assert invoke(server, "delete", "leftover", "--all").exit_code == 1


def test_endpoint_help_says_how_the_server_is_found() -> None:
    text = CliRunner().invoke(main, ["endpoint", "--help"]).output
    assert "--url" in text
    assert "MODELYARD_URL" in text
    assert "http://127.0.0.1:8080" in text

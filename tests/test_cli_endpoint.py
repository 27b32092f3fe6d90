"""`modelyard serve` without a store (control plane only), a config file declaring an
endpoint, and `modelyard endpoint` commands against it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from tests.conftest import runtime_client
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
    assert "Deleted second." in run(server, "delete", "second", "--all")
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

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.settings import Settings
from tests.conftest import runtime_client
from tests.fixtures import ROW, xgb_artifact


def test_help_lists_commands_and_sizes() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--memory" in result.output
    assert "2GiB" in result.output
    assert "demo" in CliRunner().invoke(main, ["--help"]).output


def test_bad_option_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--memory", "lots"])
    assert result.exit_code == 2
    assert "memory" in result.output
    assert "Traceback" not in result.output


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "modelyard.toml"
    config.write_text('memory = "1GiB"\nport = 9000\nendpoint_name = "from-file"\n')
    monkeypatch.setenv("MODELYARD_PORT", "9100")
    settings = Settings.load(config, endpoint_name="from-cli")
    assert int(settings.memory) == 1024**3  # file over default
    assert settings.port == 9100  # env over file
    assert settings.endpoint_name == "from-cli"  # CLI over env
    assert Settings.load().port == 9100


def test_serve_subprocess_answers_boto3(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "modelyard", "serve", str(store), "--port", str(port), "--memory", "64MiB"]
    command += ["--disk-cache", str(tmp_path / "cache"), "--endpoint-name", "prices", "--preload", "Houston_TX.tar.gz"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        client = runtime_client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                response = client.invoke_endpoint(EndpointName="prices", TargetModel="Houston_TX.tar.gz", Body=ROW)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert float(response["Body"].read()) > 0
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode in (0, -15), output  # uvicorn re-raises SIGTERM after a clean shutdown
    assert "Application shutdown complete" in output
    assert "loaded Houston_TX.tar.gz" in output  # preloaded at start-up, logged


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard",
            "demo",
            "--models",
            "12",
            "--requests",
            "15",
            "--workspace",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if ".tar.gz" in line and " ms (" in line]
    assert len(lines) == 17
    assert any("(cold)" in line for line in lines)
    assert any("(warm)" in line for line in lines)
    assert "NewYork_NY.tar.gz" in lines[-1]
    assert len(list((tmp_path / "demo" / "models").glob("*.tar.gz"))) == 13

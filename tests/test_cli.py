from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
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


HEAVY = {"numpy", "xgboost", "lightgbm", "sklearn", "starlette", "uvicorn", "obstore", "botocore", "pydantic"}


def imported_modules(*args: str) -> set[str]:
    """Top-level packages ``python -m modelyard ARGS`` imports, from ``-X importtime``."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "modelyard", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert lines, "no -X importtime output"
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["serve", "--help"], ["bench", "--help"], ["plan", "--help"], ["endpoint", "--help"]],
)
def test_help_imports_no_framework_numpy_or_server(args: list[str]) -> None:
    imported = imported_modules(*args)
    assert "click" in imported
    assert not imported & HEAVY


def test_help_lists_every_command_with_its_own_one_line_help() -> None:
    from modelyard.cli import LAZY_COMMANDS, LazyGroup

    fresh = LazyGroup(name="modelyard", lazy=LAZY_COMMANDS, commands=dict(main.commands))
    for name in LAZY_COMMANDS:  # as a new process sees it: nothing imported yet
        fresh.commands.pop(name, None)
    text = CliRunner().invoke(fresh, ["--help"]).output
    with click.Context(main) as ctx:
        for name in ("bench", "demo", "endpoint", "plan", "serve"):
            command = main.get_command(ctx, name)
            assert command is not None
            line = command.get_short_help_str(200)
            assert f"{name}  " in text
            assert line in text, name
            if name in LAZY_COMMANDS:
                assert LAZY_COMMANDS[name][1] == line  # the table says what the command says
    loaded = CliRunner().invoke(main, ["--help"]).output
    assert text.partition("Commands:")[2] == loaded.partition("Commands:")[2]


# obstore hands each result to the asyncio loop from a tokio thread: it wakes the loop (a socket send, GIL
# released) and then needs the GIL back. This loop holds that thread in Python, releasing the GIL, until the
# interpreter finalizes, so the race that aborted about one run in eight happens every time.
EXIT_RACE = """
import asyncio, runpy, sys, threading, time

class SlowWake(asyncio.SelectorEventLoop):
    def _write_to_self(self):
        super()._write_to_self()
        if threading.current_thread() is not threading.main_thread():
            while not sys.is_finalizing():
                time.sleep(0.001)

class Policy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self):
        return SlowWake()

asyncio.set_event_loop_policy(Policy())
sys.argv = ["modelyard", *sys.argv[1:]]
runpy.run_module("modelyard", run_name="__main__", alter_sys=True)
"""


def test_a_store_thread_busy_at_exit_does_not_crash_the_process(tmp_path: Path) -> None:
    script = tmp_path / "race.py"
    script.write_text(EXIT_RACE)
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [sys.executable, str(script), "plan", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr[-3000:]  # not 134 (abort), 135 (bus error) or -11
    assert "holds no artifacts" in result.stderr
    assert "Fatal Python error" not in result.stderr


def test_exit_status_as_python_gives_it() -> None:
    from modelyard.cli_exit import exit_status

    assert [exit_status(code) for code in (None, 0, 1, 2, "message", 256 + 3)] == [0, 0, 1, 2, 1, 3]


def test_the_console_script_exits_with_the_command_status(tmp_path: Path) -> None:
    for args, status in ((["--version"], 0), (["serve", "--memory", "lots"], 2), (["plan", "nowhere"], 1)):
        result = subprocess.run(
            [sys.executable, "-m", "modelyard", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
        assert result.returncode == status, (args, result.stderr)
    assert (
        "0.1.0"
        in subprocess.run(
            [sys.executable, "-m", "modelyard", "--version"], capture_output=True, text=True, timeout=60
        ).stdout
    )  # flushed before the process ends


@pytest.mark.parametrize(
    "args",
    [["serve", "{missing}"], ["plan", "{missing}"], ["bench", "http://127.0.0.1:9", "--store", "{missing}"]],
)
def test_a_missing_store_folder_is_refused_not_created(
    tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modelyard.server.run.serve", lambda settings: None)  # never serve for real here
    missing = tmp_path / "nonexistent"
    result = CliRunner().invoke(main, [a.replace("{missing}", str(missing)) for a in args])
    assert result.exit_code == 1, result.output
    assert f"The store folder '{missing}' does not exist" in result.output
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_a_store_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "models.tar.gz").write_bytes(b"")
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "models.tar.gz")])
    assert result.exit_code == 1
    assert "is a file, not a folder" in result.output


def test_serve_create_store_makes_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr("modelyard.server.run.serve", lambda settings: served.append(settings))
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "new" / "models"), "--create-store"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "models").is_dir()
    assert served[0].store == str(tmp_path / "new" / "models")

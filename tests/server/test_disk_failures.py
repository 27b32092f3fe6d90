"""A disk cache on a read-only or full file system, for real: ``modelyard serve`` in a mount namespace.

Permissions do not stop root from writing, so each server runs under ``unshare --mount``
(its mounts are private to it) with its disk cache on a read-only mount or a tiny
tmpfs; a bind mount is turned read-only and back while it serves with ``nsenter``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import free_port, runtime_client, stop_process
from tests.fixtures import ROW, xgb_artifact


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_work(), reason="needs root with unshare/nsenter (mount namespaces) to make a file system read-only"
)


def in_namespace(setup: str, *serve: str) -> list[str]:
    """``modelyard serve`` in a private mount namespace, after the ``setup`` shell commands."""
    command = " ".join([sys.executable, "-m", "modelyard", "serve", *serve])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{setup} && exec {command}"]


def remount(pid: int, folder: Path, mode: str) -> None:
    subprocess.run(["nsenter", "-t", str(pid), "-m", "mount", "-o", f"remount,bind,{mode}", str(folder)], check=True)


def ping(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def invoke(url: str, target: str) -> float:
    response = runtime_client(url).invoke_endpoint(EndpointName="modelyard", TargetModel=target, Body=ROW)
    return float(response["Body"].read())


def refused(url: str, target: str) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        invoke(url, target)
    return dict(caught.value.response)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    (folder / "Chicago_IL.tar.gz").write_bytes(xgb_artifact(1))
    big = io.BytesIO()  # a real model beside 1 MiB of data: more than a 512 KiB file system holds
    with tarfile.open(fileobj=big, mode="w:gz") as archive:
        for name, content in (("xgboost-model", xgb_artifact(2)), ("data.bin", os.urandom(1024 * 1024))):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    (folder / "Big.tar.gz").write_bytes(big.getvalue())
    return folder


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        stop_process(process)


def serve(started: list[subprocess.Popen[bytes]], tmp_path: Path, command: list[str], port: int) -> tuple[str, int]:
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while ping(url)[0] != 200:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    return url, process.pid


def test_serve_refuses_a_read_only_disk_cache_with_one_clear_line(tmp_path: Path, store: Path) -> None:
    read_only = tmp_path / "ro"
    read_only.mkdir()
    command = in_namespace(
        f"mount -t tmpfs -o ro,size=1m tmpfs {read_only}",
        str(store),
        f"--disk-cache={read_only}/cache",
        f"--port={free_port()}",
        "--no-control",
    )
    result = subprocess.run(command, capture_output=True, timeout=120, env={**os.environ})
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 1, output
    assert f"The disk cache folder {read_only}/cache cannot be used: Read-only file system" in output
    assert "Traceback" not in output


def test_a_disk_cache_turned_read_only_while_serving(
    tmp_path: Path, store: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    port = free_port()
    command = in_namespace(
        f"mount --bind {cache} {cache}", str(store), f"--disk-cache={cache}", f"--port={port}", "--no-control"
    )
    url, pid = serve(started, tmp_path, command, port)
    assert invoke(url, "Houston_TX.tar.gz") > 0
    remount(pid, cache, "ro")
    error = refused(url, "Chicago_IL.tar.gz")
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error["Error"]["Code"] == "ServiceUnavailable"
    assert "disk cache cannot be written (Read-only file system)" in error["Error"]["Message"]
    assert str(tmp_path) not in error["Error"]["Message"]
    status, body = ping(url)
    assert status == 503
    assert "Read-only file system" in body
    assert invoke(url, "Houston_TX.tar.gz") > 0  # resident models keep serving
    remount(pid, cache, "rw")
    deadline = time.monotonic() + 30  # the folder is probed again every few seconds
    while ping(url)[0] != 200:
        assert time.monotonic() < deadline, "the health check never recovered"
        time.sleep(0.2)
    assert invoke(url, "Chicago_IL.tar.gz") > 0


def test_a_full_disk_cache_is_a_503(tmp_path: Path, store: Path, started: list[subprocess.Popen[bytes]]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    port = free_port()
    setup = f"mount -t tmpfs -o size=512k tmpfs {cache}"
    command = in_namespace(setup, str(store), f"--disk-cache={cache}", f"--port={port}", "--no-control")
    url, _ = serve(started, tmp_path, command, port)
    error = refused(url, "Big.tar.gz")
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "disk cache cannot be written (No space left on device)" in error["Error"]["Message"]
    assert "No space left on device" in ping(url)[1]
    assert invoke(url, "Houston_TX.tar.gz") > 0  # what failed was removed: small models still fit

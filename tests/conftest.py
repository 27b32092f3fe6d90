"""Fixtures: servers on loopback, boto3 clients, and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from modelyard.server.run import BackgroundServer
from modelyard.settings import Settings
from modelyard.store import Store

ACCESS_KEY = "modelyard-test"


def aws_client(
    service: str, url: str, config: Config | None = None, *, key: str = ACCESS_KEY, secret: str = ACCESS_KEY
) -> Any:
    """A boto3 client for ``service`` at ``url``, with the tests' credentials unless told otherwise."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=url,
        config=config,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/test.sh installs it")
        pytest.skip("chromium is not installed (apt-get install chromium, or run scripts/test.sh)")
    return path


def runtime_client(url: str) -> Any:
    """boto3's sagemaker-runtime client against ``url``, with retries off so errors surface."""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=60)
    return aws_client("sagemaker-runtime", url, config)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., BackgroundServer]]:
    """Start servers on 127.0.0.1 (free port); all stopped at teardown."""
    servers: list[BackgroundServer] = []

    def start(store: str | Path | None, *, backend: Store | None = None, **options: Any) -> BackgroundServer:
        options.setdefault("disk_cache", tmp_path / f"disk-cache-{len(servers)}")
        options.setdefault("data_dir", tmp_path / f"data-{len(servers)}")
        options.setdefault("model_roots", [tmp_path])  # control-plane endpoints may serve the test's folders
        where = str(store) if store is not None else None  # None: the control plane alone
        settings = Settings.load(store=where, host="127.0.0.1", port=0, log_level="warning", **options)
        server = BackgroundServer(settings, backend)
        server.__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """End a server the tests started: politely, then for good."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SeaweedS3:
    """A SeaweedFS ``weed mini`` server on loopback, used as the S3 store."""

    def __init__(self, root: Path) -> None:
        weed = str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            weed = shutil.which("weed") or "weed"
        ports = [free_port() for _ in range(4)]
        self.port = ports[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = (root / "weed.log").open("wb")
        self.process = subprocess.Popen(
            [
                weed,
                "mini",
                f"-dir={root}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                f"-s3.port={ports[0]}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-master.port={ports[1]}",
                f"-volume.port={ports[2]}",
                f"-filer.port={ports[3]}",
                f"-filer.localSocket={root}/filer.sock",
                f"-s3.localSocket={root}/s3.sock",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
            },
        )
        self.client = aws_client("s3", self.endpoint)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1) as health:
                    healthy = health.status == 200
                if healthy:
                    bucket = self.bucket()
                    self.client.put_object(Bucket=bucket, Key="ready", Body=b"ok")
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("SeaweedFS did not become ready in 60 s")
            time.sleep(0.2)

    def bucket(self) -> str:
        """A new empty bucket."""
        name = f"models-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def store_options(self) -> dict[str, str]:
        return {
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": ACCESS_KEY,
        }

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    yield server
    server.stop()

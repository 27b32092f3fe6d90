"""No artifact takes the server down: a hostile one gets a 400 naming the problem, and a good model still answers.

The server runs in a subprocess (``modelyard serve``) and is called with boto3, so a
native crash, which killed the whole server before these artifacts were checked,
fails a test instead of killing pytest. A test that kills the server leaves a fresh
one to the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import free_port, runtime_client, stop_process
from tests.fixtures import ROW, lightgbm_text, xgb_artifact
from tests.handlers.hostile import nested_json, nested_ubjson, onnx_external, tarball, ubj_decode, ubj_encode

SECRET = b"secret_access_key = 'not-for-models'"
LIGHTGBM_ROW = b"1994.0,3188.0,5.0,1.5,1.62,3.0"


def xgboost_edit(edit: Callable[[dict[str, Any]], None]) -> bytes:
    from tests.fixtures import booster_bytes

    document = ubj_decode(booster_bytes(0, "ubj"))
    edit(document["learner"]["gradient_booster"]["model"]["trees"][0])
    return ubj_encode(document)


def lightgbm_edit(old: str, new: str) -> bytes:
    text = lightgbm_text(0).decode()
    assert old in text
    return text.replace(old, new, 1).encode()


ARTIFACTS: dict[str, bytes] = {}


def artifacts() -> dict[str, bytes]:
    if not ARTIFACTS:
        first_threshold = lightgbm_text(0).decode().split("threshold=")[1].split(" ")[0]
        ARTIFACTS.update(
            {
                "good.tar.gz": xgb_artifact(0),
                "deep-json.tar.gz": tarball("model.json", nested_json(100_000)),
                "deep-ubj.tar.gz": tarball("xgboost-model", nested_ubjson(100_000)),
                "xgb-parent.tar.gz": tarball(
                    "xgboost-model", xgboost_edit(lambda t: t["parents"].values.__setitem__(5, -1000))
                ),
                "xgb-child.tar.gz": tarball(
                    "xgboost-model", xgboost_edit(lambda t: t["left_children"].values.__setitem__(0, 1000))
                ),
                "lgb-feature.tar.gz": tarball("model.txt", lightgbm_edit("split_feature=1 ", "split_feature=-7 ")),
                "lgb-moved.tar.gz": tarball(
                    "model.txt", lightgbm_edit(f"threshold={first_threshold}", f"threshold=0{first_threshold}")
                ),
                "lgb-crlf.tar.gz": tarball("model.txt", lightgbm_text(0).replace(b"\n", b"\r\n")),
                "lgb-good.tar.gz": tarball("model.txt", lightgbm_text(0)),
                "onnx-cwd.tar.gz": tarball("model.onnx", onnx_external("modelyard.toml", len(SECRET))),
            }
        )
    return ARTIFACTS


class Server:
    """``modelyard serve`` in a subprocess on loopback, its working directory holding a secret."""

    def __init__(self, root: Path, store: Path, number: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cwd = root / f"cwd-{number}"
        cwd.mkdir()
        (cwd / "modelyard.toml").write_bytes(SECRET)  # what an artifact must never read
        self.log = root / f"server-{number}.log"
        command = [sys.executable, "-m", "modelyard", "serve", str(store), "--port", str(self.port)]
        command += ["--memory", "256MiB", "--disk-cache", str(root / f"disk-{number}")]
        command += ["--data-dir", str(root / f"data-{number}"), "--no-control"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        self.client = runtime_client(self.url)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if not self.alive():
                raise RuntimeError(f"the server exited at start-up:\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as ping:
                    if ping.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server was not ready in 60 s")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process.poll() is None

    def invoke(self, target: str, body: bytes = ROW) -> bytes:
        response = self.client.invoke_endpoint(EndpointName="modelyard", TargetModel=target, Body=body)
        return bytes(response["Body"].read())

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Server]]:
    """The module's server, started again when a test killed it."""
    root = tmp_path_factory.mktemp("hostile")
    store = root / "store"
    store.mkdir()
    for name, data in artifacts().items():
        (store / name).write_bytes(data)
    servers: list[Server] = []

    def current() -> Server:
        if not servers or not servers[-1].alive():
            servers.append(Server(root, store, len(servers)))
        return servers[-1]

    yield current
    for each in servers:
        each.stop()


def refused(server: Server, target: str, body: bytes = ROW) -> str:
    """The message of the ValidationError ``target`` gets (a dead server fails the test)."""
    with pytest.raises(ClientError) as caught:
        server.invoke(target, body)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationError", error
    return str(error["Message"])


def still_serves(server: Server) -> None:
    assert server.alive(), f"the server died:\n{server.log.read_text()[-2000:]}"
    assert float(server.invoke("good.tar.gz")) > 0


@pytest.mark.parametrize(
    ("target", "body", "message"),
    [
        ("deep-json.tar.gz", ROW, "'model.json' is not a valid XGBoost model: it nests deeper than 64 levels"),
        ("deep-ubj.tar.gz", ROW, "'xgboost-model' is not a valid XGBoost model: it nests deeper than 64 levels"),
        ("xgb-parent.tar.gz", ROW, "tree 0, node 5: parent -1000 is not a node of the tree"),
        ("xgb-child.tar.gz", ROW, "tree 0, node 0: left child 1000 is not a node of the tree"),
        ("lgb-feature.tar.gz", LIGHTGBM_ROW, "'model.txt' is not a valid LightGBM model: tree 0, node 0: it splits"),
        ("onnx-cwd.tar.gz", b"1", "'modelyard.toml' is not a file inside the artifact's folder"),
    ],
)
def test_a_hostile_artifact_gets_a_validation_error_and_the_server_lives_on(
    server: Callable[[], Server], target: str, body: bytes, message: str
) -> None:
    assert message in refused(server(), target, body)
    still_serves(server())
    assert message in refused(server(), target, body)  # and again: a failed load leaves nothing behind


@pytest.mark.parametrize("target", ["lgb-moved.tar.gz", "lgb-crlf.tar.gz"])
def test_lightgbm_models_whose_trees_moved_load_and_predict_the_same(server: Callable[[], Server], target: str) -> None:
    # a threshold spelt with a leading zero, or Windows line endings: tree_sizes no longer match the trees
    assert server().invoke(target, LIGHTGBM_ROW) == server().invoke("lgb-good.tar.gz", LIGHTGBM_ROW)
    still_serves(server())

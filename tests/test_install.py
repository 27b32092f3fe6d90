"""A fresh ``pip install .`` (no extras) starts, serves, and says which extra a model needs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ACCESS_KEY, free_port, runtime_client, stop_process
from tests.fixtures import ROW, xgb_artifact

ROOT = Path(__file__).parent.parent


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path: the new venv must use what it installed."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def pip_install(python: Path, requirement: str) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "install", requirement],
        capture_output=True,
        text=True,
        timeout=900,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@contextmanager
def serving(modelyard: Path, store: Path, work: Path, *options: str) -> Iterator[str]:
    port = free_port()
    command = [str(modelyard), "serve", str(store), "--port", str(port), "--log-level", "warning", *options]
    command += ["--disk-cache", str(work / "cache"), "--data-dir", str(work / "data")]
    log = (work / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=clean_env(), cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"{url}/ping", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.close()
                    raise AssertionError((work / f"serve-{port}.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process)
        log.close()


def invoke(url: str) -> float:
    response = runtime_client(url).invoke_endpoint(
        EndpointName="modelyard", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW
    )
    return float(response["Body"].read())


@pytest.mark.slow
def test_base_install_serves_and_names_the_extra_then_the_extra_serves(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=clean_env())
    python, modelyard = venv / "bin" / "python", venv / "bin" / "modelyard"
    pip_install(python, str(ROOT))

    result = subprocess.run([str(modelyard), "--help"], capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 0, result.stderr
    for command in ("bench", "demo", "endpoint", "plan", "serve"):
        assert f"  {command}  " in result.stdout
    frameworks = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print([m for m in ('xgboost', 'boto3') if u.find_spec(m)])"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert frameworks.stdout.strip() == "[]"  # really a base install

    store = tmp_path / "store"
    store.mkdir()
    (store / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    # with access keys every call's SigV4 signature is verified with botocore: part of the base install
    config = tmp_path / "modelyard.toml"
    config.write_text(f'[[access_keys]]\nid = "{ACCESS_KEY}"\nsecret = "{ACCESS_KEY}"\n')
    with serving(modelyard, store, tmp_path, "--config", str(config)) as url:
        with pytest.raises(ClientError) as refused:
            invoke(url)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert refused.value.response["Error"]["Code"] == "ValidationError"
        assert "pip install 'modelyard[xgboost]'" in refused.value.response["Error"]["Message"]
        with pytest.raises(ClientError):  # the server is still up, and still says so
            invoke(url)

    pip_install(python, f"{ROOT}[xgboost]")
    with serving(modelyard, store, tmp_path) as url:
        assert invoke(url) > 0

"""The README's Python snippets that talk to a server run as printed, on a machine without AWS credentials."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.server.run import BackgroundServer
from tests.conftest import runtime_client
from tests.fixtures import ROW, xgb_artifact

README = Path(__file__).parent.parent / "README.md"
README_URL = "http://127.0.0.1:8080"


def snippets() -> list[str]:
    """The README's Python blocks that call a server (they name an ``endpoint_url``)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    return [block for block in blocks if "endpoint_url=" in block]


def run_without_credentials(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as a user without AWS credentials would: no AWS_* variables, no ~/.aws."""
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BOTO_"))}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_the_readme_has_the_snippets_this_test_runs() -> None:
    found = snippets()
    assert len(found) == 2
    assert "invoke_endpoint" in found[0]
    assert "create_endpoint" in found[1]
    for snippet in found:
        assert README_URL in snippet


def test_the_first_request_snippet_runs_as_printed(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir)
    result = run_without_credentials(snippets()[0].replace(README_URL, server.url), tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().removeprefix("b'").rstrip("'")) > 0


@pytest.mark.slow
def test_the_control_plane_snippet_runs_as_printed(
    serve: Callable[..., BackgroundServer], store_dir: Path, tmp_path: Path
) -> None:
    (store_dir / "Houston_TX.tar.gz").write_bytes(xgb_artifact(0))
    server = serve(store_dir)
    code = snippets()[1].replace(README_URL, server.url).replace("s3://my-bucket/models/", str(store_dir))
    result = run_without_credentials(code, tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    answer = runtime_client(server.url).invoke_endpoint(
        EndpointName="house-prices-mme", TargetModel="Houston_TX.tar.gz", ContentType="text/csv", Body=ROW
    )
    assert float(answer["Body"].read()) > 0

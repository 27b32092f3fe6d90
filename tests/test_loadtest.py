"""``modelyard bench`` against a live server: counts, hit ratio, and reports that open in a browser."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.server.run import BackgroundServer
from tests.conftest import BROWSER_ARGS, chromium
from tests.fixtures import xgb_artifact
from tests.server.helpers import metrics


@pytest.fixture
def server(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    for i in range(30):
        (store_dir / f"m{i:02d}.tar.gz").write_bytes(xgb_artifact(i % 4))
    probe = serve(store_dir)
    runner = CliRunner()
    runner.invoke(
        main,
        [
            "bench",
            probe.url,
            "--store",
            str(store_dir),
            "--requests",
            "1",
            "--report",
            str(store_dir.parent / "probe.html"),
        ],
    )
    size = metrics(probe.url)["MemoryUsedBytes"]
    return serve(store_dir, memory=int(size * 10.5))  # room for about 10 of the 30 models


def test_closed_loop_reports_and_hit_ratio_match_the_server(
    server: BackgroundServer, store_dir: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            server.url,
            "--store",
            str(store_dir),
            "--requests",
            "600",
            "--concurrency",
            "4",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["requests"] == 600
    assert summary["succeeded"] + sum(summary["errors"].values()) == 600
    samples = metrics(server.url)
    hits, misses = samples["ModelCacheHit_total"], samples["ModelCacheMiss_total"]
    assert hits + misses == 600
    assert summary["server_hit_ratio"] == pytest.approx(hits / (hits + misses))
    cold = summary["latency_ms"]["cold"]["count"]
    assert cold == misses - sum(summary["errors"].values())  # the X-Modelyard-Cache header, request by request
    assert "cache hit ratio (server)" in result.output
    assert report.read_text().count("<svg") >= 3


def test_open_loop_with_a_replayed_trace(server: BackgroundServer, tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("".join(f"{i * 0.002:.3f} m{i % 7:02d}.tar.gz\n" for i in range(1200)))
    report = tmp_path / "open.html"
    result = CliRunner().invoke(main, ["bench", server.url, "--trace", str(trace), "--report", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(report.with_suffix(".json").read_text())
    assert summary["requests"] == 1200  # the whole trace, not the default count
    assert summary["distinct_models"] == 7
    # requests arriving while their model loads wait for it: they are cold too
    failed = sum(summary["errors"].values())
    assert summary["latency_ms"]["cold"]["count"] + failed == metrics(server.url)["ModelCacheMiss_total"] >= 7


def test_report_opens_in_chromium_without_errors(server: BackgroundServer, store_dir: Path, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    report = tmp_path / "report.html"
    result = CliRunner().invoke(
        main, ["bench", server.url, "--store", str(store_dir), "--requests", "200", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(report.as_uri())
        assert page.locator("svg").count() >= 3
        assert "requests in" in page.locator("pre").inner_text()
        Path("test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path="test-artifacts/bench-report.png", full_page=True)
        browser.close()
    assert errors == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Say which models to call"),
        (["--targets", "/nonexistent/targets.txt"], "Cannot read targets"),
        (["--store", "ftp://x/"], "Unsupported store URL"),
        (["--store", "{store}", "--distribution", "pareto"], "Unknown distribution"),
    ],
)
def test_bad_inputs_are_one_clear_line(
    server: BackgroundServer, store_dir: Path, args: list[str], message: str
) -> None:
    args = [a.replace("{store}", str(store_dir)) for a in args]
    result = CliRunner().invoke(main, ["bench", server.url, *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_empty_store(server: BackgroundServer, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["bench", server.url, "--store", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no target models" in result.output

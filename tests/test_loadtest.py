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


def test_a_dead_port_is_refused_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    from tests.conftest import free_port

    targets = tmp_path / "targets.txt"
    targets.write_text("m00.tar.gz\n")
    report = tmp_path / "dead.html"
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["bench", url, "--targets", str(targets), "--requests", "20", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert f"No server answers at {url} (Connection refused)" in result.output
    assert "Traceback" not in result.output
    assert not report.exists()  # nothing was measured: no report to mistake for one


def test_a_run_where_nothing_succeeded_writes_its_reports_and_exits_non_zero(
    server: BackgroundServer, tmp_path: Path
) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("missing-1.tar.gz\nmissing-2.tar.gz\n")
    report = tmp_path / "failed.html"
    result = CliRunner().invoke(
        main, ["bench", server.url, "--targets", str(targets), "--requests", "20", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: No request succeeded (20 ValidationError); first: missing-"), last
    assert report.read_text().count("<svg") >= 3  # the errors are worth reading
    assert json.loads(report.with_suffix(".json").read_text())["succeeded"] == 0


def test_the_latency_histogram_of_a_run_without_successes_draws_no_empty_legend(tmp_path: Path) -> None:
    import warnings

    import numpy as np

    from modelyard.loadtest import Result
    from modelyard.report import summarise, write_html

    result = Result(
        starts=np.array([0.0, 0.1]),
        latencies=np.array([0.01, 0.01]),
        statuses=np.array([0, 0]),
        cold=np.array([True, False]),
        codes=["ClientConnectorError"] * 2,
        targets=["a", "b"],
        wall_seconds=0.2,
        client_cpu=0.1,
        schedule_lag=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_html(summarise(result), result, tmp_path / "r.html", "no successes")
    assert "no successful request" in (tmp_path / "r.html").read_text()


def test_progress_lines_when_not_a_terminal(server: BackgroundServer, store_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["bench", server.url, "--store", str(store_dir), "--requests", "50", "--report", str(tmp_path / "p.html")],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith(f"Listing the models in {store_dir}") for line in lines)
    assert any(line.startswith("Sending 50/50 ") for line in lines)  # the closing progress line
    assert any(line.startswith("Writing the reports") for line in lines)
    assert "\r" not in result.output  # plain lines in a log

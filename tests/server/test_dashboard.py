"""The dashboard in a real headless Chromium (Debian chromium + Playwright) while traffic runs."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.server.dashboard import STATIC
from modelyard.server.run import BackgroundServer
from tests.conftest import BROWSER_ARGS, chromium
from tests.fixtures import ROW, xgb_artifact

CITIES = ["Houston_TX.tar.gz", "Chicago_IL.tar.gz", "Boston_MA.tar.gz", "Denver_CO.tar.gz", "eu/de/Berlin.tar.gz"]


class Traffic:
    """Invokes the models in a loop on one keep-alive connection, with a missing target now and then."""

    def __init__(self, server: BackgroundServer) -> None:
        self.port = server.port
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            target = "missing/Atlantis.tar.gz" if self.sent % 25 == 24 else CITIES[self.sent % len(CITIES)]
            headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target}
            connection.request("POST", "/endpoints/modelyard/invocations", ROW, headers)
            connection.getresponse().read()
            self.sent += 1
            self._stop.wait(0.004)
        connection.close()

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def server(serve: Callable[..., BackgroundServer], store_dir: Path) -> BackgroundServer:
    (store_dir / "eu" / "de").mkdir(parents=True)
    for seed, city in enumerate(CITIES):
        (store_dir / city).write_bytes(xgb_artifact(seed))
    return serve(store_dir)


@pytest.fixture
def page(server: BackgroundServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1440, "height": 1100})
        finally:
            browser.close()


def test_dashboard_charts_table_and_errors_while_traffic_runs(
    server: BackgroundServer, page: Any, tmp_path: Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    with Traffic(server) as traffic:
        page.goto(f"{server.url}/dashboard")
        # four one-second samples with traffic in them
        page.wait_for_function(
            "window.dashboard && window.dashboard.data.invocations.filter(v => v > 0).length >= 4", timeout=30_000
        )
        charts = page.evaluate(
            """Object.fromEntries(Object.entries(window.dashboard.charts).map(([name, chart]) =>
                 [name, chart.data.slice(1).map(series => series.filter(v => v != null))]))"""
        )
        drawn = page.evaluate(
            """Object.fromEntries(Object.entries(window.dashboard.charts).map(([name, chart]) => {
                 const canvas = chart.root.querySelector("canvas");
                 const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
                 let colored = 0;
                 for (let i = 0; i < pixels.length; i += 4) {
                   const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
                   if (pixels[i + 3] > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 80) colored++;
                 }
                 return [name, colored];
               }))"""
        )
        page.wait_for_function(f"document.querySelectorAll('#models tbody tr').length >= {len(CITIES)}")
        targets = page.eval_on_selector_all("#models tbody tr", "rows => rows.map(r => r.dataset.target)")
        page.wait_for_function("document.querySelector('#errors tbody').innerText.includes('Atlantis')")
        assert traffic.sent > 50

    assert set(charts) == {"loaded", "hit", "invocations", "latency", "loads", "memory"}
    for name, series in charts.items():
        assert all(len(values) >= 4 for values in series), name  # a point per second for every series
    for name, colored in drawn.items():
        assert colored > 20, name  # the series' lines are drawn (grid and axes are grey)
    loaded, _loading = charts["loaded"]
    assert max(loaded) == len(CITIES)
    assert max(charts["hit"][0]) > 80  # percent: nearly every request finds its model
    assert max(charts["invocations"][0]) > 10  # per second
    assert max(charts["invocations"][1]) > 0  # the missing targets are errors
    p50, p90, p99 = charts["latency"]
    assert min(p50) > 0
    assert max(p50) < 1000
    assert all(a <= b <= c for a, b, c in zip(p50, p90, p99, strict=True))
    used, budget = charts["memory"]
    assert 0 < max(used) < min(budget)
    assert set(CITIES) <= set(targets)
    assert page.locator(".uplot canvas").count() == 6
    assert failures == []
    assert all(url.startswith(server.url) for url in requested), requested  # nothing from outside

    # the search box narrows the table
    page.fill("#search", "hou")
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length === 1")
    assert page.locator("#models tbody tr").get_attribute("data-target") == "Houston_TX.tar.gz"
    page.fill("#search", "")
    page.wait_for_function(f"document.querySelectorAll('#models tbody tr').length === {len(CITIES)}")

    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)


def test_dashboard_assets_are_in_the_package_and_served(server: BackgroundServer) -> None:
    for name in ("dashboard.html", "dashboard.js", "dashboard.css", "uplot/uPlot.iife.min.js", "uplot/uPlot.min.css"):
        assert (STATIC / name).is_file(), name
    assert "MIT" in (STATIC / "uplot" / "LICENSE").read_text()
    with urllib.request.urlopen(f"{server.url}/dashboard", timeout=10) as response:
        html = response.read().decode()
        assert response.headers["content-type"].startswith("text/html")
    assert "https://" not in html
    assert "http://" not in html
    for asset in ("dashboard/static/uplot/uPlot.iife.min.js", "dashboard/static/dashboard.js"):
        assert asset in html
        with urllib.request.urlopen(f"{server.url}/{asset}", timeout=10) as response:
            assert response.status == 200
    with urllib.request.urlopen(f"{server.url}/stats/series?since=0", timeout=10) as response:
        doc = json.loads(response.read())
    assert set(doc) == {"seq", "interval", "columns"}


def test_dashboard_shows_control_plane_endpoints_and_picks_one(
    serve: Callable[..., BackgroundServer], store_dir: Path, page: Any
) -> None:
    from tests.conftest import aws_client, runtime_client
    from tests.server.test_control_api import FAST, create

    for seed, city in enumerate(CITIES[:4]):
        (store_dir / city).write_bytes(xgb_artifact(seed))
    server = serve(None)
    sm = aws_client("sagemaker", server.url)
    create(sm, "houses", str(store_dir), count=2)
    create(sm, "flats", str(store_dir), count=1)
    for name in ("houses", "flats"):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST)
    client = runtime_client(server.url)
    for city in CITIES[:4]:
        client.invoke_endpoint(EndpointName="houses", TargetModel=city, ContentType="text/csv", Body=ROW)
    page.goto(f"{server.url}/dashboard?endpoint=houses")
    page.wait_for_function("document.querySelector('#endpoint').innerText.includes('2 instances')", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#models tbody tr').length === 4")
    page.wait_for_function("window.dashboard.data.loaded.some(v => v === 4)", timeout=30_000)
    labels = page.eval_on_selector_all("#pick option", "options => options.map(o => o.textContent.trim())")
    assert labels[0] == "flats"
    assert "houses" in labels
    assert "houses · AllTraffic · instance 1" in labels
    page.select_option("#pick", label="flats")
    page.wait_for_url("**/dashboard?endpoint=flats")
    page.wait_for_function("document.querySelector('#endpoint').innerText.startsWith('flats')", timeout=30_000)

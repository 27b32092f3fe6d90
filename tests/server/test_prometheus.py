"""A real Prometheus (the Debian package) scrapes a live server; PromQL sees the traffic we sent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.server.run import BackgroundServer
from tests.conftest import free_port, runtime_client, stop_process
from tests.fixtures import ROW, xgb_artifact
from tests.server.helpers import metrics

ROOT = Path(__file__).parents[2]
CITIES = ["Houston_TX.tar.gz", "Chicago_IL.tar.gz", "Boston_MA.tar.gz", "Denver_CO.tar.gz"]
HIT_RATIO = "sum(ModelCacheHit_total) / (sum(ModelCacheHit_total) + sum(ModelCacheMiss_total))"


class Prometheus:
    """``prometheus`` on loopback scraping one target every second, with its data in a temp dir."""

    def __init__(self, root: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail("prometheus is not installed: scripts/test.sh installs it")
            pytest.skip("prometheus is not installed (apt-get install prometheus, or run scripts/test.sh)")
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: modelyard\n    static_configs:\n      - targets: ['{target}']\n"
        )
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (root / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now (raises on a PromQL error)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            doc = json.loads(response.read())
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 30) -> None:
        """Poll until ``expr`` evaluates to ``expected`` (the first scrape takes a few seconds)."""
        deadline = time.monotonic() + timeout
        seen: float | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}")
            try:
                seen = self.value(expr)
            except OSError:  # not listening yet
                seen = None
            if seen == expected:
                return
            time.sleep(0.25)
        raise AssertionError(f"{expr} is {seen}, not {expected}, after {timeout} s")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[BackgroundServer], Prometheus]]:
    started: list[Prometheus] = []

    def start(server: BackgroundServer) -> Prometheus:
        started.append(Prometheus(tmp_path, server.url.removeprefix("http://")))
        return started[-1]

    yield start
    for instance in started:
        instance.stop()


def _grafana_exprs() -> list[str]:
    doc = json.loads((ROOT / "docs" / "grafana" / "modelyard.json").read_text())
    exprs = [target["expr"] for panel in doc["panels"] for target in panel["targets"]]
    exprs += [v["query"]["query"] for v in doc["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def _as_promql(expr: str) -> str:
    """A Grafana expression with its variables replaced as Grafana would ("All" selected)."""
    expr = expr.replace("$__rate_interval", "30s")
    return re.sub(r"\$\{?(endpoint|variant|instance)\}?", ".*", expr)


def test_prometheus_scrapes_the_hit_ratio_of_the_traffic_sent(
    serve: Callable[..., BackgroundServer], store_dir: Path, prometheus: Callable[[BackgroundServer], Prometheus]
) -> None:
    for seed, city in enumerate(CITIES):
        (store_dir / city).write_bytes(xgb_artifact(seed))
    server = serve(store_dir)
    scraper = prometheus(server)  # starts while we send traffic
    client = runtime_client(server.url)
    cold, warm = len(CITIES), 3
    for city in CITIES:
        for _ in range(1 + warm):
            client.invoke_endpoint(EndpointName="modelyard", TargetModel=city, ContentType="text/csv", Body=ROW)
    sent = cold * (1 + warm)
    assert metrics(server.url)["Invocations_total"] == sent

    scraper.wait_for("sum(Invocations_total)", sent)
    assert scraper.value(HIT_RATIO) == pytest.approx(cold * warm / sent)  # 12 hits of 16: 0.75
    assert scraper.value("sum(ModelCacheMiss_total)") == cold
    assert scraper.value("sum(ModelLoads_total)") == cold
    assert scraper.value("sum(LoadedModelCount)") == cold
    assert scraper.value('count(ModelLatency_bucket{EndpointName="modelyard", le="+Inf"})') == 1
    labels = scraper.query("LoadedModelCount")[0]["metric"]
    assert {k: labels[k] for k in ("EndpointName", "VariantName", "Instance")} == {
        "EndpointName": "modelyard",
        "VariantName": "AllTraffic",
        "Instance": "0",
    }

    # every query of the Grafana dashboard is valid PromQL over metrics the server exports
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        families = set(re.findall(r"^# TYPE (\w+)", response.read().decode(), re.MULTILINE))
    for expr in _grafana_exprs():
        selector = re.fullmatch(r"label_values\((.*), \w+\)", expr)
        scraper.query(_as_promql(selector.group(1) if selector else expr))
        for metric in re.findall(r"\b[A-Z]\w+\b", expr):
            if metric not in ("EndpointName", "VariantName", "Instance", "Reason", "ErrorCode"):
                assert metric.removesuffix("_bucket") in families, (metric, expr)

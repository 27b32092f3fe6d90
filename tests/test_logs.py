"""Structured logs: JSON lines, request ids in headers and logs, sampled request logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.logs import REQUEST_ID, JsonFormatter, RequestLog, configure, new_request_id
from modelyard.settings import Settings
from tests.fixtures import dummy_artifact
from tests.test_metrics import Served

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Logging configured as ``modelyard serve --log-format json`` does; returns a reader of the lines."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure("info", "json")

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]

    yield lines
    root.handlers[:], level = saved
    root.setLevel(level)


def test_request_ids_look_like_uuids_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(UUID.match(i) for i in ids)


def test_json_formatter_keeps_extra_fields_and_tracebacks() -> None:
    record = logging.LogRecord("modelyard.cache", logging.WARNING, __file__, 1, "loaded %s", ("a.tar.gz",), None)
    record.model = "a.tar.gz"
    record.seconds = 0.5
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "loaded a.tar.gz"
    assert (doc["level"], doc["logger"], doc["model"], doc["seconds"]) == (
        "warning",
        "modelyard.cache",
        "a.tar.gz",
        0.5,
    )
    assert doc["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


def test_sampling_logs_the_requested_fraction(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="modelyard.requests")
    for sample, low, high in ((0.0, 0, 0), (0.25, 400, 600), (1.0, 2000, 2000)):
        caplog.clear()
        log = RequestLog(sample)
        for _ in range(2000):
            log.write("id", "a.tar.gz", 200, 0.001)
        assert low <= len(caplog.records) <= high, sample


@pytest.mark.anyio
async def test_loads_evictions_failures_and_requests_are_logged_with_their_request_id(
    tmp_path: Path, json_logs: Any
) -> None:
    served = Served(tmp_path, budget=1500)
    served.endpoint.request_log = RequestLog(1.0)
    await served.store.put("a.dummy.json", dummy_artifact(size=1000))
    await served.store.put("b.dummy.json", dummy_artifact(size=1000))
    await served.store.put("broken.dummy.json", dummy_artifact(fail="corrupt model"))
    try:
        _, first, _ = await served.invoke("a.dummy.json")
        _, second, _ = await served.invoke("b.dummy.json")  # evicts a.dummy.json
        _, failed, _ = await served.invoke("broken.dummy.json")
        _, missing, _ = await served.invoke("missing.dummy.json")
    finally:
        await served.endpoint.close()
    lines = json_logs()
    events = {(line.get("event"), line.get("model")): line for line in lines}

    load = events["load", "a.dummy.json"]
    assert load["logger"] == "modelyard.cache"
    assert load["request_id"] == first["x-amzn-requestid"]  # the request that caused the load
    assert load["memory_bytes"] == 1000
    assert load["version"]
    assert load["load_seconds"] >= 0
    assert load["download_seconds"] >= 0

    evict = events["evict", "a.dummy.json"]
    assert evict["reason"] == "capacity"
    assert evict["request_id"] == second["x-amzn-requestid"]
    assert evict["memory_bytes"] == 1000
    assert evict["unload_seconds"] >= 0

    failure = events["load_failed", "broken.dummy.json"]
    assert failure["level"] == "warning"
    assert failure["error_code"] == "ValidationError"
    assert "corrupt model" in failure["reason"]
    assert failure["request_id"] == failed["x-amzn-requestid"]
    assert ("load_failed", "missing.dummy.json") not in events  # debug only: clients can send any name

    requests = [line for line in lines if line["logger"] == "modelyard.requests"]
    assert [(r["model"], r["status"]) for r in requests] == [
        ("a.dummy.json", 200),
        ("b.dummy.json", 200),
        ("broken.dummy.json", 400),
        ("missing.dummy.json", 400),
    ]
    assert [r["request_id"] for r in requests] == [
        first["x-amzn-requestid"],
        second["x-amzn-requestid"],
        failed["x-amzn-requestid"],
        missing["x-amzn-requestid"],
    ]
    assert requests[0]["model_seconds"] is not None
    assert requests[0]["response_bytes"] > 0
    assert requests[2]["error_code"] == "ValidationError"
    assert all(UUID.match(r["request_id"]) for r in requests)


@pytest.mark.anyio
async def test_request_logs_are_off_by_default(tmp_path: Path, json_logs: Any) -> None:
    served = Served(tmp_path, budget=5000)
    await served.store.put("a.dummy.json", dummy_artifact())
    try:
        for _ in range(20):
            assert (await served.invoke("a.dummy.json"))[0] == 200
    finally:
        await served.endpoint.close()
    assert not [line for line in json_logs() if line["logger"] == "modelyard.requests"]
    assert served.endpoint.request_log.sample == 0.0
    assert REQUEST_ID.get() is None  # each request set it in its own task's context


def test_settings_and_cli_options() -> None:
    settings = Settings.load(log_format="json", request_log_sample=0.5)
    assert (settings.log_format, settings.request_log_sample) == ("json", 0.5)
    with pytest.raises(ValueError, match="request_log_sample"):
        Settings.load(request_log_sample=2)
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert "--log-format [text|json]" in result.output
    assert "--request-log-sample" in result.output

"""Large requests take turns; small ones are served meanwhile (no timing: events decide the order)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.artifacts import DiskCache
from modelyard.cache import ModelCache
from modelyard.endpoint import Endpoint
from modelyard.errors import ServiceUnavailable
from modelyard.handlers import Model
from modelyard.server.app import create_app
from modelyard.settings import Settings
from modelyard.store import open_store
from modelyard.turns import Turns
from tests.fixtures import DummyHandler, dummy_artifact, dummy_loader, dummy_measure

pytestmark = pytest.mark.anyio

LARGE = b"\n".join([b"1,2,3"] * 20_000)  # 120 KB: over the 64 KiB inline payload
SMALL = b"1,2,3"


async def test_turns_run_in_order_and_refuse_beyond_the_queue() -> None:
    turns = Turns(running=1, queue=2)
    order: list[int] = []
    release = asyncio.Event()

    async def hold(number: int) -> None:
        async with turns.turn(timeout=60):
            order.append(number)
            await release.wait()

    first = asyncio.create_task(hold(1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(hold(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    assert (turns.running, turns.waiting) == (1, 2)
    with pytest.raises(ServiceUnavailable, match="1 large requests in progress and 2 waiting"):
        turns.check()
    with pytest.raises(ServiceUnavailable):
        async with turns.turn(timeout=60):
            pass
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == [1, 2, 3]
    assert (turns.running, turns.waiting) == (0, 0)


async def test_a_request_that_cannot_start_before_its_deadline_is_refused() -> None:
    turns = Turns(running=1, queue=4)
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn(timeout=60):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable, match="waited 0 s"):
        async with turns.turn(timeout=0):
            pass
    assert turns.waiting == 0
    release.set()
    await holder
    async with turns.turn(timeout=0):  # a free turn is taken whatever the deadline
        assert turns.running == 1


async def test_a_cancelled_waiter_gives_up_its_place_and_a_granted_one_passes_it_on() -> None:
    turns = Turns(running=1, queue=4)
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn(timeout=60):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(hold())
    granted_then_cancelled = asyncio.create_task(hold())
    last = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert turns.waiting == 3
    cancelled.cancel()
    await asyncio.sleep(0)
    assert turns.waiting == 2
    release.set()
    await holder  # hands its turn to the next waiter, which is cancelled before it resumes
    granted_then_cancelled.cancel()
    await asyncio.gather(granted_then_cancelled, return_exceptions=True)
    await last  # the turn reached the last one all the same
    assert (turns.running, turns.waiting) == (0, 0)


class GatedModel(Model):
    """Predicts once its gate opens, so a test decides when a large request ends."""

    handler = "gated"

    def __init__(self, gate: threading.Event, started: threading.Event) -> None:
        self.gate, self.started = gate, started

    def predict(self, data: Any) -> Any:
        if len(data) > 1:  # only large requests wait
            self.started.set()
            if not self.gate.wait(30):
                raise RuntimeError("the gate never opened")
        return np.asarray(data).sum(axis=1)


class GatedHandler(DummyHandler):
    def __init__(self) -> None:
        super().__init__()
        self.gate, self.started = threading.Event(), threading.Event()

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        return GatedModel(self.gate, self.started)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Endpoint, GatedHandler]]:
    url = f"memory://turns-{tmp_path.name}"
    store = open_store(url)
    await store.put("gated-dummy.json", dummy_artifact())
    settings = Settings.load(
        store=url, disk_cache=tmp_path / "disk", log_level="warning", large_requests=1, large_queue=0
    )
    handler = GatedHandler()
    cache = ModelCache(
        store,
        DiskCache(tmp_path / "disk", 10**9, max_unpacked=10**8),
        dummy_loader(handler),
        budget=10**9,
        measure=dummy_measure,
    )
    endpoint = Endpoint(settings, store, cache=cache)
    yield endpoint, handler
    handler.gate.set()
    await endpoint.close()


async def test_a_large_request_beyond_the_turns_is_refused_and_small_ones_are_served(
    served: tuple[Endpoint, GatedHandler],
) -> None:
    endpoint, handler = served
    large = asyncio.create_task(endpoint.invoke("gated-dummy.json", LARGE, "text/csv", None))
    assert await asyncio.to_thread(handler.started.wait, 30)
    assert endpoint.large.running == 1
    with pytest.raises(ServiceUnavailable, match="large requests in progress"):
        await endpoint.invoke("gated-dummy.json", LARGE, "text/csv", None)
    small = await endpoint.invoke("gated-dummy.json", SMALL, "text/csv", None)  # not held up by the large one
    assert small.body == b"6.0"
    assert not large.done()
    handler.gate.set()
    answer = await large
    assert answer.body.count(b"\n") == 19_999
    assert endpoint.large.running == 0


async def test_large_v2_requests_take_the_same_turns(served: tuple[Endpoint, GatedHandler]) -> None:
    endpoint, handler = served
    app = create_app(endpoint)
    rows = [[1.0, 2.0, 3.0]] * 4000
    doc = {"inputs": [{"name": "x", "shape": [4000, 3], "datatype": "FP64", "data": rows}]}
    body = json.dumps(doc).encode()
    assert len(body) > 65536

    async def infer() -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v2/models/gated-dummy.json/infer",
            "raw_path": b"/v2/models/gated-dummy.json/infer",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    first = asyncio.create_task(infer())
    assert await asyncio.to_thread(handler.started.wait, 30)
    status, answer = await infer()
    assert status == 503
    assert "large requests in progress" in json.loads(answer)["error"]
    handler.gate.set()
    status, answer = await first
    assert status == 200
    assert json.loads(answer)["outputs"][0]["data"][:2] == [6.0, 6.0]

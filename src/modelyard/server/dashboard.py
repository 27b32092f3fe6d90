"""The dashboard: a page at ``/dashboard`` with live charts, the models and recent errors.

The charts read ``GET /stats/series``: one sample per second kept server-side in a
ring buffer (15 minutes by default) by a task started with the app. A sample costs a
few counter reads, so the server does the same work with or without viewers, and a
viewer asks only for the samples it has not seen (``?since=<seq>``). The table and
the errors come from the stats API (:mod:`modelyard.server.admin`).

The page is plain HTML and JavaScript with uPlot (MIT, vendored from npm under
``static/uplot/``): nothing is fetched from outside the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from modelyard.endpoint import Endpoint
from modelyard.server.context import no_default_endpoint
from modelyard.stats import percentiles

__all__ = ["FIELDS", "STATIC", "Series", "routes"]

STATIC = Path(__file__).with_name("static")
FIELDS = (
    "time",
    "loaded",
    "loading",
    "hitRatio",
    "invocations",
    "errors",
    "p50",
    "p90",
    "p99",
    "loads",
    "evictions",
    "memoryUsed",
    "memoryBudget",
)
"""One sample: unix time; models loaded and loading; hit ratio over the interval (None
without lookups); invocations, errors, loads and evictions per second; latency
percentiles of the interval's answered requests in seconds (None without any); memory
used and budget in bytes."""


class Series:
    """One-second samples of an endpoint's activity in a ring buffer (see module doc)."""

    def __init__(
        self, endpoint: Endpoint, *, capacity: int = 900, interval: float = 1.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self.seq = 0
        """Number of the last sample taken."""
        self._clock = clock
        self._samples: deque[tuple[int, tuple[Any, ...]]] = deque(maxlen=capacity)
        self._previous = self._counters()
        self._task: asyncio.Task[None] | None = None

    def _counters(self) -> tuple[float, int, int, int, int, int, int, list[int]]:
        m = self.endpoint.metrics
        return (
            self._clock(),
            m.hits,
            m.misses,
            m.invocations,
            m.errors_4xx + m.errors_5xx,
            m.loads,
            sum(m.evictions.values()),
            list(m.models.latency),
        )

    def sample(self) -> None:
        """Take one sample: the rates since the previous one and the current levels."""
        now = self._counters()
        then, self._previous = self._previous, now
        elapsed = max(now[0] - then[0], 1e-9)
        hits, misses = now[1] - then[1], now[2] - then[2]
        latency = [a - b for a, b in zip(now[7], then[7], strict=True)]
        p50, p90, p99 = percentiles(latency)
        cache = self.endpoint.cache
        self.seq += 1
        self._samples.append(
            (
                self.seq,
                (
                    round(now[0], 3),
                    len(cache.entries()),
                    len(cache.loading()),
                    hits / (hits + misses) if hits + misses else None,
                    (now[3] - then[3]) / elapsed,
                    (now[4] - then[4]) / elapsed,
                    p50,
                    p90,
                    p99,
                    (now[5] - then[5]) / elapsed,
                    (now[6] - then[6]) / elapsed,
                    cache.used + cache.reserved,
                    cache.budget,
                ),
            )
        )

    def since(self, seq: int) -> dict[str, Any]:
        """Samples after number ``seq``, one list per field (uPlot's data layout)."""
        rows = [values for number, values in self._samples if number > seq]
        columns = {name: [row[i] for row in rows] for i, name in enumerate(FIELDS)}
        return {"seq": self.seq, "interval": self.interval, "columns": columns}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sample()

    def start(self) -> None:
        """Sample every ``interval`` seconds on the running loop until :meth:`stop`."""
        self._previous = self._counters()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@functools.cache
def _page() -> str:
    return (STATIC / "dashboard.html").read_text(encoding="utf-8")


async def page(request: Request) -> Response:
    """``GET /dashboard``: the page itself."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


async def series(request: Request) -> Response:
    """``GET /stats/series?since=<seq>``: the samples the viewer has not seen yet."""
    raw = request.query_params.get("since", "0")
    the_series: Series | None = request.app.state.series
    if the_series is None:
        raise no_default_endpoint()
    return JSONResponse(the_series.since(int(raw) if raw.isdigit() else 0))


def routes() -> list[BaseRoute]:
    """The dashboard page, its static files and its time series."""
    return [
        Route("/dashboard", page, methods=["GET"], name="dashboard"),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
        Route("/stats/series", series, methods=["GET"]),
    ]

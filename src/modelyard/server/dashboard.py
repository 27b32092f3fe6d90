"""The dashboard: a page at ``/dashboard`` with live charts, the models and recent errors.

The charts read ``GET /stats/series`` (:mod:`modelyard.server.series`): one sample per
second per instance kept server-side, summed over the endpoint, variant or instance the
viewer picked (``?endpoint=&variant=&instance=``, the page's own query); a viewer asks
only for the samples it has not seen (``?since=<seq>``). The table and the errors come
from the stats API (:mod:`modelyard.server.admin`), the picker from ``GET /stats/endpoints``.

The page is plain HTML and JavaScript with uPlot (MIT, vendored from npm under
``static/uplot/``): nothing is fetched from outside the server.
"""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from modelyard.server.context import served
from modelyard.server.series import Series

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).with_name("static")


@functools.cache
def _page() -> str:
    return (STATIC / "dashboard.html").read_text(encoding="utf-8")


async def page(request: Request) -> Response:
    """``GET /dashboard``: the page itself."""
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


async def series(request: Request) -> Response:
    """``GET /stats/series?since=<seq>&endpoint=&variant=&instance=``: the samples the viewer has not seen yet."""
    raw = request.query_params.get("since", "0")
    the_series: Series = request.app.state.series
    instances = served(request).instances(request.query_params.get("variant"), request.query_params.get("instance"))
    keys = [instance.metrics.labels for instance in instances]
    return JSONResponse(the_series.since(int(raw) if raw.isdigit() else 0, keys))


def routes() -> list[BaseRoute]:
    """The dashboard page, its static files and its time series."""
    return [
        Route("/dashboard", page, methods=["GET"], name="dashboard"),
        Mount("/dashboard/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
        Route("/stats/series", series, methods=["GET"]),
    ]

"""Logs: text or JSON lines, request ids, and sampled request logs.

* :func:`configure` sets up the root logger once, from ``main()``: ``text`` lines for
  people, ``json`` lines (one object per line, every ``extra`` field kept) for log
  pipelines. The cache logs one line per load, eviction and failed load on
  ``modelyard.cache`` with the model, version, timings and reason as fields.
* Every invocation gets a request id (:func:`new_request_id`), returned as
  ``x-amzn-RequestId`` and set in :data:`REQUEST_ID` while the request is served, so
  every line logged meanwhile (a load the request started, a failure) carries it.
* :class:`RequestLog` writes one ``modelyard.requests`` line per sampled request;
  off by default, since a line per request costs more than the request itself.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = ["REQUEST_ID", "JsonFormatter", "RequestLog", "configure", "new_request_id"]

REQUEST_ID: ContextVar[str | None] = ContextVar("modelyard_request_id", default=None)
"""The id of the request being served in this context, if any."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_PREFIX = str(uuid.uuid4())[:24]  # random per process: ids stay unique across instances
_COUNTER = itertools.count(random.getrandbits(40))


def new_request_id() -> str:
    """A new request id shaped like a UUID (random prefix per process, then a counter).

    A fresh ``uuid4()`` costs ~3 µs, a tenth of a warm request's overhead; this
    costs ~0.2 µs and is as unique within a process, and across processes with
    overwhelming probability.
    """
    return f"{_PREFIX}{next(_COUNTER) & 0xFFFFFFFFFFFF:012x}"


class _RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged (tools and tests replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(level: str = "info", fmt: str = "text") -> logging.Handler:
    """Send every log line to stderr as ``text`` or ``json`` lines at ``level``; returns the handler."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class RequestLog:
    """Writes a ``modelyard.requests`` line for a ``sample`` fraction of requests (0 = none, 1 = all)."""

    def __init__(self, sample: float = 0.0) -> None:
        self.sample = sample
        """Fraction of requests logged; callers test it first so the off case costs nothing."""
        self._log = logging.getLogger("modelyard.requests")
        self._random = random.random

    def write(
        self,
        request_id: str,
        target: str | None,
        status: int,
        seconds: float,
        *,
        model_seconds: float | None = None,
        code: str | None = None,
        request_bytes: int | None = None,
        response_bytes: int | None = None,
    ) -> None:
        """Log this request if it is sampled."""
        if self.sample < 1.0 and self._random() >= self.sample:
            return
        self._log.info(
            "%s %s %d %.3f ms",
            request_id,
            target,
            status,
            seconds * 1000,
            extra={
                "event": "request",
                "request_id": request_id,
                "model": target,
                "status": status,
                "error_code": code,
                "seconds": round(seconds, 6),
                "model_seconds": None if model_seconds is None else round(model_seconds, 6),
                "request_bytes": request_bytes,
                "response_bytes": response_bytes,
            },
        )

"""Client connections that cannot take the server down.

uvicorn's httptools protocol reads whatever a client sends for as long as it sends
it: a header value grows across reads without bound, a head or a body may trickle in
forever, and connections are accepted until the process runs out of file
descriptors, after which every new connection fails. :class:`GuardedHttpProtocol` is
that protocol with limits, so that a well-behaved client always gets through,
whatever hostile connections are open:

* a request's head (request line and headers) is at most ``max_header_bytes`` and
  :data:`MAX_HEADER_FIELDS` fields, else 431;
* the head must be complete ``header_timeout`` seconds after its first byte (or after
  the connection opened, for its first request), else 408;
* a body may pause at most ``body_timeout`` seconds and must have fully arrived
  ``request_timeout`` seconds after the request's first byte, else 408 (a plain close
  when a response was started); the app's ``receive()`` then sees ``http.disconnect``;
* a response whose client stops reading it is dropped after ``body_timeout``;
* an idle keep-alive connection is closed after ``keep_alive_timeout``;
* at ``max_connections``, a new connection closes the most stalled one: one lingering
  after an error answer first, then the longest idle keep-alive one, then the one
  reading a request for the longest time, then one whose client stopped reading its
  response. Only when every connection is busy with a request the app is serving is
  the new one answered 503 with ``Retry-After: 1``.

The hot path stays httptools': a warm request adds a few attribute and dict updates
per parser callback, and no timer operation. Each connection has one timer, armed
lazily: it may fire early, and then re-arms itself for the deadline of the moment.

uvicorn's ``limit_concurrency`` is not used: it counts a connection only once its
headers are complete (slowloris connections never count), closes nothing to make
room, and answers in plain text.

The answers written here (431, 408, 503) take the AWS error shape and are followed
by a lingering close: the server half-closes and drops what the client still sends
for a moment, so that the client reads the answer rather than a connection reset.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from modelyard.errors import ModelyardError, RequestHeadTooLarge, RequestTimeout, TooManyConnections
from modelyard.logs import new_request_id
from modelyard.metrics import ConnectionCounts
from modelyard.server.limits import ConnectionLimits
from modelyard.server.responses import error_body

__all__ = ["MAX_HEADER_FIELDS", "Connections", "GuardedHttpProtocol", "protocol_class"]

log = logging.getLogger("modelyard.server")

MAX_HEADER_FIELDS = 100
"""Header fields a request may carry (as Apache, Tomcat and Kestrel): it bounds what a head held open costs."""
LINGER_SECONDS = 2.0
"""How long the server reads and drops what a client still sends after an error answer."""

# A connection's phase. Those up to _HEAD count the bytes they receive towards a head.
_FRESH, _IDLE, _HEAD, _BODY, _APP, _LINGER = range(6)
_NEVER = math.inf


class Connections:
    """One server's open connections, grouped by what they wait for, each group oldest first.

    Groups are insertion-ordered dicts, so finding the most stalled connection and
    moving one between groups cost O(1). A connection whose request the app is
    serving is in no group: it is never closed to make room.
    """

    def __init__(self, limits: ConnectionLimits, counts: ConnectionCounts) -> None:
        self.limits = limits
        self.counts = counts
        counts.limit = limits.max_connections
        self.lingering: dict[GuardedHttpProtocol, None] = {}
        """After an error answer, until the client closes or the linger ends."""
        self.idle: dict[GuardedHttpProtocol, None] = {}
        """Keep-alive, between requests."""
        self.reading: dict[GuardedHttpProtocol, None] = {}
        """Waiting for a request's head or body (a new connection too), by the request's start."""
        self.writing: dict[GuardedHttpProtocol, None] = {}
        """Whose client stopped reading a response."""
        self._logged_at: float | None = None

    def victim(self) -> GuardedHttpProtocol | None:
        """The connection to close to make room, or None when all are busy being served."""
        for group in (self.lingering, self.idle, self.reading, self.writing):
            for connection in group:
                return connection
        return None

    def at_capacity(self, now: float) -> None:
        """Log, at most once a minute, that connections are being closed or refused to make room."""
        if self._logged_at is None or now - self._logged_at > 60.0:
            self._logged_at = now
            log.warning(
                "At the limit of %d connections: closing the most stalled ones, or answering 503 when all are "
                "busy (ConnectionsClosed_total in /metrics counts them).",
                self.limits.max_connections,
            )


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`ConnectionLimits`.

    Use :func:`protocol_class` to get one bound to a server's :class:`Connections`.
    """

    registry: ClassVar[Connections]
    """The server's connections (set by :func:`protocol_class`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._registry = self.registry
        self._limits = self._registry.limits
        self._phase = _FRESH
        self._since = 0.0  # when the current request began (its first byte, or the connection's opening)
        self._mark = 0.0  # the last body bytes (_BODY), when writing stalled (_APP), idling or lingering began
        self._head_bytes = 0  # received since the last complete head, while no request is being read past it
        self._group: dict[GuardedHttpProtocol, None] | None = None
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER

    # -- the connection -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        registry = self._registry
        counts = registry.counts
        self._counted = True
        counts.open += 1
        now = self.loop.time()
        self._since = now
        if counts.open > self._limits.max_connections:
            registry.at_capacity(now)
            victim = registry.victim()
            if victim is None:
                # Counted until it closes, and the first to go when the next one arrives.
                self._refuse(
                    TooManyConnections(
                        f"The server is at its limit of {self._limits.max_connections} connections, "
                        "all busy with requests; retry in a second."
                    ),
                    "over_capacity",
                    retry_after=True,
                )
                return
            victim._close("evicted")
        self._enter(registry.reading)
        self._schedule(now + self._limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._phase = _LINGER
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the bytes of a head counted and a refused head answered 431
        phase = self._phase
        if phase <= _HEAD:
            self._head_bytes += len(data)
        elif phase == _LINGER:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket routes: uvicorn runs with ws="none"
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, RequestHeadTooLarge):
                self._refuse(exc.__context__, "head_too_large")
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        phase = self._phase
        if phase in (_HEAD, _BODY):  # a request spans reads: the only path with timers to check
            self._reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        phase = self._phase
        if phase in (_APP, _IDLE):  # the response, or its unsent end, is stuck
            now = self.loop.time()
            self._mark = now
            if phase == _APP:
                self._enter(self._registry.writing)
            self._schedule(now + self._limits.body_timeout)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._group is self._registry.writing:
            self._leave()

    # -- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A later request's clock starts with its first byte, set in _reading(): most requests arrive
        # whole in one read, and then need neither a clock nor a place among the reading connections.
        self._phase = _HEAD

    def on_headers_complete(self) -> None:
        if self._head_bytes > self._limits.max_header_bytes or len(self.headers) > MAX_HEADER_FIELDS:
            self._check_head()  # the count is an upper bound (the read may hold body bytes too): measure
        self._head_bytes = 0
        self._phase = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle.response_complete and not self.pipeline:  # answered before its body had arrived
            self._idle()
        else:
            self._phase = _APP
            if self._group is not None:
                self._leave()

    def on_response_complete(self) -> None:
        # uvicorn's, with the connection's own timer in place of a keep-alive timer armed per response
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._phase == _APP:
            self._idle()

    # -- limits ---------------------------------------------------------------------

    def _check_head(self) -> None:
        """Refuse a head over the limits (raised through the parser, which stops there)."""
        size = len(self.url) + 14 + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._limits.max_header_bytes or len(self.headers) > MAX_HEADER_FIELDS:
            raise self._head_too_large()

    def _head_too_large(self) -> RequestHeadTooLarge:
        return RequestHeadTooLarge(
            f"The request line and headers exceed {self._limits.max_header_bytes} bytes "
            f"or {MAX_HEADER_FIELDS} header fields."
        )

    def _reading(self) -> None:
        """After a read that left a request's head or body incomplete."""
        limits = self._limits
        now = self.loop.time()
        registry = self._registry
        if self._group is not registry.reading:  # the request began with this read (a new one is in already)
            self._since = now
            self._enter(registry.reading)
        if self._phase == _HEAD:
            if self._head_bytes > limits.max_header_bytes or len(self.headers) > MAX_HEADER_FIELDS:
                self._refuse(self._head_too_large(), "head_too_large")
            else:
                self._schedule(self._since + limits.header_timeout)
            return
        self._mark = now
        self._schedule(min(now + limits.body_timeout, self._since + limits.request_timeout))

    def _idle(self) -> None:
        now = self.loop.time()
        self._phase = _IDLE
        self._mark = now
        self._enter(self._registry.idle)
        deadline = now + self._limits.keep_alive_timeout
        if deadline < self._timer_at:  # rarely: the timer is usually armed already, and re-arms itself
            self._schedule(deadline)

    def _schedule(self, deadline: float) -> None:
        """Make the timer fire no later than ``deadline``; an earlier timer re-arms itself when it fires."""
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = _NEVER
        if not self._counted:
            return
        limits = self._limits
        now = self.loop.time()
        phase = self._phase
        if phase in (_FRESH, _HEAD):
            deadline, reason = self._since + limits.header_timeout, "header_timeout"
        elif phase == _IDLE:
            if self.flow.write_paused:  # answered, but the client does not read the end of it
                deadline, reason = self._mark + limits.body_timeout, "send_timeout"
            else:
                deadline, reason = self._mark + limits.keep_alive_timeout, "keep_alive_timeout"
        elif phase == _BODY:
            if self.flow.read_paused:  # the app has not taken what arrived: the client is not the one waiting
                self._mark = now
                self._schedule(now + limits.body_timeout)
                return
            deadline, reason = self._mark + limits.body_timeout, "body_timeout"
            if self._since + limits.request_timeout < deadline:
                deadline, reason = self._since + limits.request_timeout, "request_timeout"
        elif phase == _APP:
            if not self.flow.write_paused:  # the app is serving the request: not ours to limit
                return
            deadline, reason = self._mark + limits.body_timeout, "send_timeout"
        else:
            deadline, reason = self._mark + LINGER_SECONDS, ""
        if now < deadline:
            self._schedule(deadline)
            return
        self._expire(phase, reason)

    def _expire(self, phase: int, reason: str) -> None:
        limits = self._limits
        if phase == _LINGER:
            self._close(None)
        elif phase == _HEAD:
            message = f"The request's headers did not arrive within {limits.header_timeout:g} s."
            self._refuse(RequestTimeout(message), reason)
        elif phase == _BODY:
            if reason == "body_timeout":
                message = f"The request's body paused for more than {limits.body_timeout:g} s."
            else:
                message = f"The request's body did not arrive within {limits.request_timeout:g} s."
            self._refuse(RequestTimeout(message), reason)
        else:
            self._close(reason)

    # -- closing --------------------------------------------------------------------

    def _refuse(self, error: ModelyardError, reason: str, *, retry_after: bool = False) -> None:
        """Answer ``error`` in the AWS shape, then close (lingering); just close when a response is under way."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self.pipeline or self._phase != _BODY or cycle.response_started:
                self._close(reason)  # an answer is being written, or owed to an earlier request first
                return
            # The app's receive() now returns http.disconnect, and whatever it sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._registry.counts.closed[reason] += 1
        body = error_body(error.code, error.message, error.extra())
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"x-amzn-ErrorType: ",
            error.code.encode("latin-1"),
            b"\r\nx-amzn-RequestId: ",
            new_request_id().encode("latin-1"),
            b"\r\n",
        ]
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        head += [b"content-length: ", str(len(body)).encode("latin-1"), b"\r\nconnection: close\r\n\r\n", body]
        transport = self.transport
        transport.write(b"".join(head))
        # Half-close, then read and drop what the client still sends until it closes: closing with
        # unread data would reset the connection, and the client could lose the answer.
        now = self.loop.time()
        self._phase = _LINGER
        self._mark = now
        self._enter(self._registry.lingering)
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self._schedule(now + LINGER_SECONDS)
        else:
            self._close(None)

    def _close(self, reason: str | None) -> None:
        """Close now; counted under ``reason`` unless it was counted when answered."""
        if reason is not None and self._phase != _LINGER:
            self._registry.counts.closed[reason] += 1
        self._phase = _LINGER
        transport = self.transport
        if transport.get_write_buffer_size():  # the client is not reading: drop what is queued
            transport.abort()
        else:
            transport.close()
        self._release()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._registry.counts.open -= 1
            self._leave()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = _NEVER

    def _enter(self, group: dict[GuardedHttpProtocol, None]) -> None:
        if self._group is not None:
            del self._group[self]
        group[self] = None
        self._group = group

    def _leave(self) -> None:
        if self._group is not None:
            del self._group[self]
            self._group = None


def protocol_class(limits: ConnectionLimits, counts: ConnectionCounts | None = None) -> type[GuardedHttpProtocol]:
    """A protocol class for one server (uvicorn's ``http=``), keeping its connections' numbers in ``counts``."""
    connections = Connections(limits, counts if counts is not None else ConnectionCounts())

    class ServerHttpProtocol(GuardedHttpProtocol):
        registry = connections

    return ServerHttpProtocol

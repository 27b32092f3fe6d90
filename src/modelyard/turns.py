"""Turns for large requests, so that they do not starve small ones.

A request whose body is larger than ``inline_payload`` decodes, predicts and
encodes on a worker thread. Even read a whole body at a time, a maximum-size
request keeps a core busy for a while; several at once take every core from the
event loop, and the small requests it serves wait. :class:`Turns` lets
``large_requests`` of them run at once per endpoint, in arrival order; up to
``large_queue`` more wait for their turn, and the next one is refused at once with
ServiceUnavailable, as is one that cannot start before its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from modelyard.errors import ServiceUnavailable

__all__ = ["Turns"]


class Turns:
    """At most ``running`` holders at once, at most ``queue`` waiting (first come, first served)."""

    def __init__(self, running: int, queue: int) -> None:
        if running < 1 or queue < 0:
            raise ValueError("Turns need running >= 1 and queue >= 0")
        self.running_limit = running
        self.queue_limit = queue
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn."""
        return len(self._waiting)

    def check(self) -> None:
        """Refuse a new request right away when it could not even wait (before any work is done for it)."""
        if self.running >= self.running_limit and len(self._waiting) >= self.queue_limit:
            raise ServiceUnavailable(
                f"The endpoint is at its limit of {self.running_limit} large requests in progress "
                f"and {self.queue_limit} waiting."
            )

    @contextlib.asynccontextmanager
    async def turn(self, timeout: float) -> AsyncIterator[None]:
        """Hold a turn for the block; waits at most ``timeout`` seconds for it (then ServiceUnavailable)."""
        await self._acquire(timeout)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, timeout: float) -> None:
        if self.running < self.running_limit and not self._waiting:
            self.running += 1
            return
        self.check()
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(granted)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await granted
        except BaseException as exc:
            if granted.done() and not granted.cancelled():
                self._release()  # the turn came as the wait ended: pass it on
            else:
                granted.cancel()
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiting.remove(granted)
            if isinstance(exc, TimeoutError):
                raise ServiceUnavailable(
                    f"A large request waited {timeout:.3g} s for one of the endpoint's "
                    f"{self.running_limit} turns for large requests."
                ) from None
            raise

    def _release(self) -> None:
        while self._waiting:
            granted = self._waiting.popleft()
            if not granted.done():
                granted.set_result(None)  # the turn passes to the next in line: ``running`` stays
                return
        self.running -= 1

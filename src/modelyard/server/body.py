"""Request bodies: read into one buffer, refused beyond the endpoint's limit.

Joining the chunks once at the end costs one copy of the body; appending each chunk
to a growing ``bytes`` copies everything received so far every time (a 6 MB body
in 64 KiB chunks: about 300 MB copied).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from modelyard.errors import ModelyardError, PayloadTooLarge

__all__ = ["ClientDisconnect", "asgi_chunks", "read_body"]


async def read_body(
    chunks: AsyncIterable[bytes],
    limit: int,
    declared: int | None = None,
    too_large: type[ModelyardError] = PayloadTooLarge,
) -> bytes:
    """The whole body; ``too_large`` as soon as it (or its declared length) exceeds ``limit`` bytes."""
    if declared is not None and declared > limit:
        raise too_large(f"Request body of {declared} bytes exceeds the limit of {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(f"Request body exceeds the limit of {limit} bytes.")
        if chunk:
            parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body chunks of an ASGI request; ClientDisconnect when the client goes away first."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        yield chunk if type(chunk) is bytes else bytes(chunk)
        if not message.get("more_body", False):
            return

"""Request bodies, read with a bound: no route holds more than its limit of a client's bytes."""

from __future__ import annotations

from starlette.types import Receive

from modelyard.errors import ModelyardError, PayloadTooLarge, ValidationError

__all__ = ["read_body"]


async def read_body(
    receive: Receive, declared: int | None, limit: int, too_large: type[ModelyardError] = PayloadTooLarge
) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (declared or sent) with ``too_large``.

    A client that goes away mid-body gets a :class:`ValidationError` that nobody will read;
    the request just ends.
    """
    if declared is not None and declared > limit:
        raise too_large(f"Request body of {declared} bytes exceeds the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValidationError("The client closed the connection before sending the whole body.")
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise too_large(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)

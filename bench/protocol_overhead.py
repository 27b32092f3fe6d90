"""What the connection limits cost a warm request: uvicorn's httptools protocol against modelyard's.

    python bench/protocol_overhead.py [--requests 5000] [--rounds 40]

Feeds the same keep-alive invocation (SageMaker headers, a CSV row) to each protocol
over an in-memory transport, with an ASGI app that reads the body and answers at
once, on uvloop; short rounds alternate between the two protocols, and the fastest
round of each (the least disturbed by other work on the machine) is compared, with
the median beside it. Only the protocol differs, so the difference is what the limits cost
per request (parser callbacks, task, response), without a network, a client or a
model in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from modelyard.server.connections import protocol_class
from modelyard.server.limits import ConnectionLimits
from modelyard.settings import Settings

BODY = b"1994,3188,5,1.5,1.62,3"
REQUEST = (
    b"POST /endpoints/modelyard/invocations HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Accept-Encoding: identity\r\n"
    b"Content-Type: text/csv\r\n"
    b"X-Amzn-SageMaker-Target-Model: Houston_TX.tar.gz\r\n"
    b"User-Agent: Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux lang/python#3.11\r\n"
    b"X-Amz-Date: 20261202T120000Z\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=AKIA/20261202/us-east-1/sagemaker/aws4_request, "
    b"SignedHeaders=content-type;host;x-amz-date, Signature=0123456789abcdef\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)


class Transport:
    """Just enough of an asyncio transport; counts the responses written."""

    def __init__(self) -> None:
        self.responses = 0

    def write(self, data: bytes) -> None:
        self.responses += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"text/csv"), (b"content-length", b"9")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"390471.12"})


async def one_round(protocol_type: type[HttpToolsProtocol], config: Config, requests: int) -> float:
    """Seconds per request for ``requests`` keep-alive requests on one connection."""
    loop = asyncio.get_running_loop()
    protocol = protocol_type(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        while not protocol.cycle.response_complete:
            await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    assert transport.responses == 2 * requests
    protocol.connection_lost(None)
    return seconds / requests


async def compare(requests: int, rounds: int) -> dict[str, list[float]]:
    config = Config(app, log_level="warning", lifespan="off")
    config.load()
    guarded = protocol_class(ConnectionLimits.from_settings(Settings(), open_files=1024))
    times: dict[str, list[float]] = {"uvicorn HttpToolsProtocol": [], "modelyard GuardedHttpProtocol": []}
    await one_round(HttpToolsProtocol, config, requests // 10)  # warm-up
    await one_round(guarded, config, requests // 10)
    for _ in range(rounds):
        times["uvicorn HttpToolsProtocol"].append(await one_round(HttpToolsProtocol, config, requests))
        times["modelyard GuardedHttpProtocol"].append(await one_round(guarded, config, requests))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=40, help="rounds per protocol, alternating")
    args = parser.parse_args()
    times = uvloop.run(compare(args.requests, args.rounds))
    base = min(times["uvicorn HttpToolsProtocol"])
    for name, values in times.items():
        print(
            f"{name:32s} {min(values) * 1e6:6.2f} µs/request (fastest of {len(values)} rounds; "
            f"median {statistics.median(values) * 1e6:.2f}); {(min(values) - base) * 1e6:+.2f} µs"
        )


if __name__ == "__main__":
    main()

"""Hostile connections against a real server on loopback: a well-behaved client always gets through.

Raw sockets play the attackers (oversized and trickled heads, bodies short of their
Content-Length, more connections than the server may open); boto3 and urllib play
the well-behaved clients. Timeouts are small so that every test takes seconds; the
waits below are upper bounds for the server to act, never measurements.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelyard.server.limits import default_max_connections
from modelyard.server.run import BackgroundServer
from tests.conftest import free_port, runtime_client, stop_process
from tests.fixtures import ROW, DummyHandler, dummy_artifact, dummy_loader, xgb_artifact
from tests.server.helpers import metrics

INVOKE = b"POST /endpoints/modelyard/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
TARGET = "Houston_TX.tar.gz"


@pytest.fixture
def store(store_dir: Path) -> Path:
    (store_dir / TARGET).write_bytes(xgb_artifact(0))
    return store_dir


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def drain(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """What the server sends until it closes (True) or ``timeout`` seconds pass (False)."""
    received = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a connection that stays open."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
        header(answer, b"content-length") or 0
    ):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {answer[:200]!r}")
        answer += chunk
    return answer


def closed_by_server(sock: socket.socket, timeout: float = 0.0) -> bool:
    """Whether the server has closed ``sock`` (within ``timeout`` seconds)."""
    return drain(sock, timeout)[1]


def complete_request(body: bytes = ROW, length: int | None = None) -> bytes:
    """A whole invocation of :data:`TARGET`, as bytes (``length``: the Content-Length to declare)."""
    declared = len(body) if length is None else length
    return INVOKE + b"X-Amzn-SageMaker-Target-Model: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        TARGET.encode(),
        declared,
        body,
    )


def invoke(url: str, body: bytes = ROW, target: str = TARGET) -> tuple[int, bytes]:
    """A well-behaved urllib client's invocation: its status and body."""
    request = urllib.request.Request(
        f"{url}/endpoints/modelyard/invocations",
        data=body,
        headers={"X-Amzn-SageMaker-Target-Model": target, "Content-Type": "text/csv"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def status(answer: bytes) -> int:
    """The status of a raw response; 0 when there is none."""
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0


def header(answer: bytes, name: bytes) -> bytes | None:
    head = answer.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def test_a_head_over_the_cap_is_refused_with_431_and_closed(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    server = serve(store, max_header_bytes="16KiB")
    with connect(server.url) as sock:
        sock.sendall(INVOKE + b"X-Huge: ")
        try:
            for _ in range(64):  # 256 KiB of one header value, never finished
                sock.sendall(b"a" * 4096)
        except OSError:
            pass  # the server may close before it has all
        answer, closed = drain(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert header(answer, b"x-amzn-ErrorType") == b"ValidationError"
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["__type"] == "ValidationError"
    assert closed
    # A head under the cap is served, and so is the next client.
    request = urllib.request.Request(
        f"{server.url}/endpoints/modelyard/invocations",
        data=ROW,
        headers={"X-Amzn-SageMaker-Target-Model": TARGET, "Content-Type": "text/csv", "X-Padding": "p" * 12_000},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert metrics(server.url)["ConnectionsClosed_total[head_too_large]"] == 1


def test_too_many_header_fields_are_refused(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store)
    with connect(server.url) as sock:
        sock.sendall(INVOKE + b"".join(b"X-F%d: 1\r\n" % i for i in range(150)) + b"Content-Length: 0\r\n\r\n")
        answer, closed = drain(sock)
    assert status(answer) == 431
    assert closed


def test_a_trickled_head_is_closed_at_the_header_deadline(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, header_timeout=0.5)
    with connect(server.url) as sock:
        sock.sendall(INVOKE)
        answer, closed = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a byte every 50 ms, never a complete header
            if select.select([sock], [], [], 0.05)[0]:
                answer, closed = drain(sock)
                break
            try:
                sock.send(b"x")
            except OSError:
                closed = True
                break
    assert status(answer) == 408, answer[:200]
    assert header(answer, b"x-amzn-ErrorType") == b"RequestTimeout"
    assert closed
    assert invoke(server.url)[0] == 200


def test_a_connection_that_sends_nothing_is_closed_silently(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    server = serve(store, header_timeout=0.5)
    with connect(server.url) as sock:
        answer, closed = drain(sock)
    assert (answer, closed) == (b"", True)
    assert metrics(server.url)["ConnectionsClosed_total[header_timeout]"] == 1


def test_a_body_short_of_its_length_is_closed_and_not_a_5xx(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    server = serve(store, body_timeout=0.5)
    with connect(server.url) as sock:
        sock.sendall(complete_request(ROW[:11], length=100))  # 11 of the 100 bytes it declares
        answer, closed = drain(sock)
    assert status(answer) == 408, answer[:200]
    assert closed
    assert invoke(server.url)[0] == 200
    seen = metrics(server.url)
    # The request never arrived: not an invocation, let alone a server error.
    assert seen["Invocation5XXErrors_total"] == 0
    assert seen["Invocation4XXErrors_total"] == 0
    assert seen["Invocations_total"] == 1
    assert seen["ConnectionsClosed_total[body_timeout]"] == 1


def test_a_trickled_body_is_closed_at_the_request_deadline(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, body_timeout=5, request_timeout=1)
    with connect(server.url) as sock:
        sock.sendall(INVOKE + b"Content-Length: 1000\r\n\r\n")
        answer, closed = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # never pausing for body_timeout, never done
            if select.select([sock], [], [], 0.05)[0]:
                answer, closed = drain(sock)
                break
            sock.send(b"1")
    assert status(answer) == 408, answer[:200]
    assert closed
    assert metrics(server.url)["ConnectionsClosed_total[request_timeout]"] == 1


def test_a_later_request_on_a_connection_has_its_own_header_deadline(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    server = serve(store, header_timeout=0.5, keep_alive_timeout=30)
    with connect(server.url) as sock:
        sock.sendall(complete_request())
        assert status(read_response(sock)) == 200
        time.sleep(1)  # idle longer than header_timeout: the next request's clock starts with its first byte
        sock.sendall(INVOKE)  # then a head that trickles
        answer, closed = b"", False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if select.select([sock], [], [], 0.05)[0]:
                answer, closed = drain(sock)
                break
            sock.send(b"x")
    assert status(answer) == 408, answer[:200]
    assert closed
    assert metrics(server.url)["ConnectionsClosed_total[header_timeout]"] == 1


def test_a_steady_body_in_many_reads_is_served(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, body_timeout=0.5, request_timeout=10)
    rows = b"\n".join([ROW] * 40_000)  # about 900 KB, sent over two seconds
    with connect(server.url) as sock:
        sock.sendall(INVOKE + b"X-Amzn-SageMaker-Target-Model: %s\r\n" % TARGET.encode())
        sock.sendall(b"Content-Type: text/csv\r\nContent-Length: %d\r\n\r\n" % len(rows))
        for start in range(0, len(rows), len(rows) // 10):
            sock.sendall(rows[start : start + len(rows) // 10])
            time.sleep(0.2)  # each pause within body_timeout, the whole longer than it
        answer = read_response(sock)
    assert status(answer) == 200, answer[:200]
    assert answer.count(b"\n") > 40_000


def test_a_response_the_client_stops_reading_is_dropped(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, body_timeout=0.5)
    rows = b"\n".join([ROW] * 250_000)  # 5.75 MB in, 6 MB of JSON predictions out: more than socket buffers hold
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and hardly any room for them
    host, port = server.url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    with sock:
        sock.sendall(complete_request(rows).replace(b"Content-Length", b"Accept: application/json\r\nContent-Length"))
        deadline = time.monotonic() + 20
        while server.connections.closed["send_timeout"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # never reading
        assert server.connections.closed["send_timeout"] == 1
        _, closed = drain(sock)
    assert closed
    assert invoke(server.url)[0] == 200


def test_an_idle_keep_alive_connection_is_closed(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, keep_alive_timeout=0.3)
    with connect(server.url) as sock:
        sock.sendall(complete_request())
        answer, closed = drain(sock, timeout=3)  # uvicorn alone would keep it 5 s
    assert status(answer) == 200
    assert closed
    assert metrics(server.url)["ConnectionsClosed_total[keep_alive_timeout]"] >= 1


def test_stalled_connections_make_room_for_a_good_client(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, max_connections=20)
    stalled = [connect(server.url) for _ in range(50)]
    try:
        for sock in stalled:
            sock.sendall(INVOKE)  # a head that never completes
        response = runtime_client(server.url).invoke_endpoint(
            EndpointName="modelyard", TargetModel=TARGET, ContentType="text/csv", Body=ROW
        )
        assert float(response["Body"].read()) > 0
        closed = [closed_by_server(sock, timeout=0.5 if i < 31 else 0.0) for i, sock in enumerate(stalled)]
        # The oldest were closed, one for each connection past the cap (the good client's included).
        assert closed == [True] * 31 + [False] * 19
    finally:
        for sock in stalled:
            sock.close()


def test_idle_keep_alive_connections_go_first(serve: Callable[..., BackgroundServer], store: Path) -> None:
    server = serve(store, max_connections=3)
    idle = connect(server.url)
    idle.sendall(complete_request())
    assert status(read_response(idle)) == 200
    reading = [connect(server.url) for _ in range(2)]
    for sock in reading:
        sock.sendall(INVOKE)
    late = connect(server.url)
    try:
        late.sendall(INVOKE)
        assert closed_by_server(idle, timeout=5)  # idle, so the first to go
        assert not closed_by_server(reading[0], timeout=0.2)
        latest = connect(server.url)
        assert closed_by_server(reading[0], timeout=5)  # then the one reading for the longest time
        assert not closed_by_server(reading[1], timeout=0.2)
        latest.close()
    finally:
        for sock in [idle, *reading, late]:
            sock.close()


def test_all_busy_answers_503_with_retry_after_then_recovers(
    serve: Callable[..., BackgroundServer], store: Path
) -> None:
    (store / "slow.dummy.json").write_bytes(dummy_artifact(delay=2.0))
    server = serve(store, max_connections=3)
    assert server.endpoint is not None
    server.endpoint.cache.loader = dummy_loader(DummyHandler())
    results: list[int] = []
    busy = [
        threading.Thread(target=lambda: results.append(invoke(server.url, b"1,2,3", "slow.dummy.json")[0]))
        for _ in range(3)
    ]
    for thread in busy:
        thread.start()
    deadline = time.monotonic() + 10
    while server.endpoint.inflight < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.endpoint.inflight == 3
    with connect(server.url) as sock:
        sock.sendall(INVOKE + b"Content-Length: 0\r\n\r\n")
        answer, closed = drain(sock)
    assert status(answer) == 503, answer[:200]
    assert header(answer, b"retry-after") == b"1"
    assert header(answer, b"x-amzn-ErrorType") == b"ServiceUnavailable"
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["__type"] == "ServiceUnavailable"
    assert closed
    for thread in busy:
        thread.join(timeout=30)
    assert results == [200, 200, 200]
    assert invoke(server.url)[0] == 200
    assert server.connections.closed["over_capacity"] == 1


# -- a server process with few file descriptors -------------------------------------

OPEN_FILES = 256


class LimitedServer:
    """``modelyard serve`` in its own process, started with a soft limit of 128 open files and a hard one of
    :data:`OPEN_FILES`."""

    def __init__(self, root: Path) -> None:
        (root / "store").mkdir()
        (root / "store" / TARGET).write_bytes(xgb_artifact(0))
        port = free_port()
        command = [sys.executable, "-m", "modelyard", "serve", str(root / "store"), "--port", str(port)]
        command += ["--disk-cache", str(root / "cache"), "--data-dir", str(root / "data"), "--memory", "64MiB"]
        self.log_path = root / "server.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ}, preexec_fn=self._limit
        )
        self.pid = self.process.pid
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @staticmethod
    def _limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES // 2, OPEN_FILES))

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    server = LimitedServer(tmp_path_factory.mktemp("limited"))
    yield server
    server.stop()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_serve_raises_the_open_files_limit(limited_server: LimitedServer) -> None:
    cap = default_max_connections(OPEN_FILES)
    expected = f"Open files allowed: {OPEN_FILES} (raised from {OPEN_FILES // 2}); client connections: up to {cap}."
    assert expected in limited_server.log_path.read_text()
    assert metrics(limited_server.url)["ConnectionLimit"] == cap


def test_partial_heads_do_not_grow_memory(limited_server: LimitedServer) -> None:
    url, pid = limited_server.url, limited_server.pid
    assert invoke(url)[0] == 200
    before = rss(pid)
    chunk = b"a" * (1 << 20)
    for _ in range(10):  # each sends 50 MB of a header value that never ends
        with connect(url) as sock:
            sock.sendall(INVOKE + b"X-Huge: ")
            try:
                for _ in range(50):
                    sock.sendall(chunk)
            except OSError:
                pass
            answer, closed = drain(sock, timeout=5)
        assert status(answer) == 431, answer[:200]
        assert closed
    assert invoke(url)[0] == 200
    assert rss(pid) - before < 16 * 1024 * 1024


def test_more_connections_than_open_files(limited_server: LimitedServer) -> None:
    url, pid = limited_server.url, limited_server.pid
    attackers = []
    try:
        for _ in range(300):  # bodies that never arrive: each holds a descriptor as long as it is open
            sock = connect(url)
            sock.sendall(INVOKE + b"Content-Length: 100\r\n\r\n" + ROW[:11])
            attackers.append(sock)
        assert invoke(url)[0] == 200
        assert len(os.listdir(f"/proc/{pid}/fd")) < OPEN_FILES
        cap = default_max_connections(OPEN_FILES)
        assert sum(closed_by_server(sock, timeout=0.01) for sock in attackers) >= len(attackers) - cap
    finally:
        for sock in attackers:
            sock.close()


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v2/models/Houston_TX.tar.gz/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # Open Inference Protocol
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: SageMaker.ListModels\r\n",  # control plane
        b"POST /models HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # container API
    ],
    ids=["v2", "control", "container"],
)
def test_a_body_that_stops_ends_every_route_cleanly(
    serve: Callable[..., BackgroundServer], store: Path, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(store, body_timeout=0.5)
    with connect(server.url) as sock:
        sock.sendall(head + b"Content-Length: 100\r\n\r\n{")
        answer, closed = drain(sock)
    assert status(answer) == 408, answer[:200]
    assert closed
    seen = metrics(server.url)
    assert seen["Invocation5XXErrors_total"] == 0
    assert seen["Invocations_total"] == 0
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == []

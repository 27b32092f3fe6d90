"""Connection abuse drill: hostile connections at scale while a well-behaved client keeps invoking.

    python bench/drill_connections.py                  # starts its own server (1,024 open files)
    python bench/drill_connections.py --url http://127.0.0.1:8080 --target Houston_TX.tar.gz

Runs, one after the other: 10 connections each sending a 50 MB header that never ends,
500 slowloris connections (a header byte every second, never complete), 1,100
connections whose bodies never arrive (``Content-Length: 100``, 11 bytes sent), and
one such body alone. For each it prints what came back (status, and when the server
closed the connection), what a well-behaved client measured meanwhile (a new
connection and one invocation every 0.2 s: it must keep getting 200s) and the
server's RSS. Its own server runs ``modelyard serve`` with ``RLIMIT_NOFILE`` 1024 on
core 0 and default settings; the drill runs on core 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from artifacts import ensure_artifacts, make_store
from benchlib import (
    OUT,
    Conn,
    free_port,
    http_get,
    invoke_request,
    parse_metrics,
    percentiles,
    pin_self,
    rss_bytes,
    stop,
)

INVOKE_HEAD = b"POST /endpoints/modelyard/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Target:
    host: str
    port: int
    pid: int | None
    model: str

    def connect(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=10)

    def rss(self) -> int | None:
        if self.pid is not None:
            return rss_bytes(self.pid)
        with contextlib.suppress(OSError, RuntimeError):
            status, body = http_get(self.port, "/metrics")
            if status == 200:
                return int(parse_metrics(body.decode()).get("process_resident_memory_bytes", 0))
        return None

    def closed_by_reason(self) -> dict[str, float]:
        with contextlib.suppress(OSError, RuntimeError):
            status, body = http_get(self.port, "/metrics")
            if status == 200:
                closed: dict[str, float] = {}
                for line in body.decode().splitlines():
                    if line.startswith("ConnectionsClosed_total{"):
                        reason = line.split('Reason="', 1)[1].split('"', 1)[0]
                        closed[reason] = float(line.rsplit(" ", 1)[1])
                return closed
        return {}


@dataclass
class GoodClient:
    """A new connection and one invocation every ``interval`` seconds, on a thread."""

    target: Target
    interval: float = 0.2
    samples: list[tuple[float, int | str, float]] = field(default_factory=list)  # (time, status or error, ms)
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        request = invoke_request(self.target.model)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with Conn(self.target.port, timeout=30) as conn:
                    outcome: int | str = conn.roundtrip(request)[0]
            except OSError as exc:
                outcome = type(exc).__name__
            self.samples.append((time.monotonic(), outcome, (time.perf_counter() - started) * 1000))
            self.peak_rss = max(self.peak_rss, self.target.rss() or 0)
            self._stop.wait(self.interval)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def summary(self, since: float) -> str:
        window = [(status, ms) for at, status, ms in self.samples if at >= since]
        ok = [ms for status, ms in window if status == 200]
        failed = [status for status, _ in window if status != 200]
        if not window:
            return "well-behaved client: no request completed"
        p = percentiles(ok) if ok else {"p50": float("nan"), "p99": float("nan")}
        text = f"well-behaved client: {len(ok)}/{len(window)} answered 200, p50 {p['p50']:.1f} ms, "
        text += f"p99 {p['p99']:.1f} ms, max {max(ok, default=float('nan')):.1f} ms"
        if failed:
            text += f"; failures: {sorted(set(map(str, failed)))}"
        return text


@dataclass
class Outcome:
    opened: float
    status: int | None = None
    answered: float | None = None
    closed: float | None = None


def _status(data: bytes) -> int | None:
    with contextlib.suppress(ValueError, IndexError):
        return int(data.split(b" ", 2)[1])
    return None


def watch(socks: list[socket.socket], outcomes: list[Outcome], *, seconds: float, trickle: float | None) -> None:
    """Read what the server sends until it closes each socket or ``seconds`` pass; send a byte every ``trickle``."""
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(socks):
        if outcomes[index].closed is None:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
    deadline = time.monotonic() + seconds
    next_trickle = time.monotonic() + (trickle or seconds)
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            index, sock = key.data, socks[key.data]
            outcome = outcomes[index]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data and outcome.status is None:
                outcome.status, outcome.answered = _status(data), time.monotonic()
            if not data:
                outcome.closed = time.monotonic()
                selector.unregister(sock)
        if trickle is not None and time.monotonic() >= next_trickle:
            next_trickle += trickle
            for index, sock in enumerate(socks):
                if outcomes[index].closed is None:
                    with contextlib.suppress(OSError):
                        sock.send(b"x")
    selector.close()


def describe(name: str, outcomes: list[Outcome], seconds: float) -> str:
    groups: dict[str, list[float]] = {}
    for outcome in outcomes:
        if outcome.closed is None:
            key = "still open"
            after = seconds
        elif outcome.status is not None:
            key = f"answered {outcome.status}, then closed"
            after = outcome.closed - outcome.opened
        else:
            key = "closed without an answer"
            after = outcome.closed - outcome.opened
        groups.setdefault(key, []).append(after)
    parts = [
        f"{len(times)} {key} after {min(times):.1f}-{max(times):.1f} s"
        if key != "still open"
        else f"{len(times)} still open after {seconds:.0f} s"
        for key, times in sorted(groups.items(), key=lambda item: -len(item[1]))
    ]
    return f"{name}: {'; '.join(parts)}"


def partial_head(target: Target, megabytes: int, index: int, lines: list[str]) -> None:
    started = time.monotonic()
    chunk = b"a" * (1 << 20)
    sent = 0
    with target.connect() as sock:
        try:
            sock.sendall(INVOKE_HEAD + b"X-Huge: ")
            for _ in range(megabytes):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        sent_s = time.monotonic() - started
        outcome = Outcome(started)
        watch([sock], [outcome], seconds=15, trickle=None)
    answer = f"answered {outcome.status}" if outcome.status else "no answer"
    closed = f"closed after {outcome.closed - started:.1f} s" if outcome.closed else "still open after 15 s"
    lines.append(f"  head {index + 1:2d}: sent {sent / 2**20:.0f} MiB in {sent_s:.1f} s; {answer}; {closed}")


def connections(target: Target, count: int, first: bytes) -> tuple[list[socket.socket], list[Outcome]]:
    socks: list[socket.socket] = []
    outcomes: list[Outcome] = []
    for _ in range(count):
        outcome = Outcome(time.monotonic())
        try:
            sock = target.connect()
            sock.sendall(first)
        except OSError:
            outcome.closed = outcome.opened
            sock = socket.socket()
        socks.append(sock)
        outcomes.append(outcome)
    return socks, outcomes


def warm_up(target: Target, seconds: float = 120.0) -> None:
    """Invoke until the model answers (the server may still be importing its frameworks)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), Conn(target.port, timeout=60) as conn:
            if conn.roundtrip(invoke_request(target.model))[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.model} did not answer 200 within {seconds:.0f} s")
        time.sleep(0.2)


def drill(target: Target, args: argparse.Namespace) -> None:
    warm_up(target)
    print(f"server RSS, warm: {(target.rss() or 0) / 2**20:.0f} MiB")
    client = GoodClient(target)
    thread = client.start()
    time.sleep(2)
    print(f"baseline ({client.summary(0)})")

    since = time.monotonic()
    lines: list[str] = []
    heads = [threading.Thread(target=partial_head, args=(target, args.head_mb, i, lines)) for i in range(args.heads)]
    for head in heads:
        head.start()
    for head in heads:
        head.join()
    print(f"{args.heads} partial heads of {args.head_mb} MiB, at once:")
    print("\n".join(sorted(lines)))
    print(f"  {client.summary(since)}; server RSS now {(target.rss() or 0) / 2**20:.0f} MiB")

    for name, count, first, trickle, seconds in (
        (f"{args.slowloris} slowloris (a header byte a second)", args.slowloris, INVOKE_HEAD, 1.0, args.wait),
        (
            f"{args.slow_bodies} bodies short of their length (100 declared, 11 sent)",
            args.slow_bodies,
            INVOKE_HEAD + b"X-Amzn-SageMaker-Target-Model: " + target.model.encode() + b"\r\n"
            b"Content-Type: text/csv\r\nContent-Length: 100\r\n\r\n" + b"1994,3188,5",
            None,
            args.wait,
        ),
        (
            "1 body short of its length (100 declared, 11 sent)",
            1,
            INVOKE_HEAD + b"Content-Length: 100\r\n\r\n" + b"1994,3188,5",
            None,
            args.wait,
        ),
    ):
        since = time.monotonic()
        socks, outcomes = connections(target, count, first)
        watch(socks, outcomes, seconds=seconds, trickle=trickle)
        for sock in socks:
            sock.close()
        print(describe(name, outcomes, seconds))
        print(f"  {client.summary(since)}; server RSS now {(target.rss() or 0) / 2**20:.0f} MiB")

    client.stop()
    thread.join()
    print(f"whole drill: {client.summary(0)}")
    print(f"server RSS at the end: {(target.rss() or 0) / 2**20:.0f} MiB (peak seen {client.peak_rss / 2**20:.0f} MiB)")
    closed = target.closed_by_reason()
    if closed:
        print("ConnectionsClosed_total: " + ", ".join(f"{k} {v:.0f}" for k, v in closed.items() if v))


def own_server(open_files: int) -> tuple[subprocess.Popen[bytes], Target]:
    target_name = ensure_artifacts(1)[0]
    root = OUT / "drill"
    shutil.rmtree(root, ignore_errors=True)  # a fresh disk cache and control plane each run
    store = make_store(root / "store", [target_name])
    port = free_port()
    command = [sys.executable, "-m", "modelyard", "serve", str(store), "--port", str(port), "--memory", "256MiB"]
    command += ["--disk-cache", str(root / "cache"), "--data-dir", str(root / "data"), "--log-level", "warning"]

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
        os.sched_setaffinity(0, {0})

    log = (root / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limits)
    target = Target("127.0.0.1", port, process.pid, target_name)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError):
            if http_get(port, "/ping", timeout=2)[0] == 200:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start: see {root / 'server.log'}")
        time.sleep(0.1)
    return process, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing server (else the drill starts its own)")
    parser.add_argument("--pid", type=int, help="the existing server's pid, for its RSS (else from /metrics)")
    parser.add_argument("--target", default="Houston_TX.tar.gz", help="a model the existing server serves")
    parser.add_argument("--open-files", type=int, default=1024, help="RLIMIT_NOFILE of the drill's own server")
    parser.add_argument("--heads", type=int, default=10)
    parser.add_argument("--head-mb", type=int, default=50)
    parser.add_argument("--slowloris", type=int, default=500)
    parser.add_argument("--slow-bodies", type=int, default=1100)
    parser.add_argument("--wait", type=float, default=45.0, help="seconds to wait for the server to close each wave")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the drill itself holds 1,100 sockets
    pin_self(1)
    process = None
    if args.url:
        host, port = args.url.removeprefix("http://").rstrip("/").split(":")
        target = Target(host, int(port), args.pid, args.target)
    else:
        process, target = own_server(args.open_files)
        print(f"own server: modelyard serve, RLIMIT_NOFILE {args.open_files}, pid {process.pid}, core 0")
    try:
        drill(target, args)
    finally:
        if process is not None:
            stop(process)


if __name__ == "__main__":
    main()

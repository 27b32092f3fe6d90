"""Shared helpers for the benchmark suite: processes, a raw HTTP client, metrics, RSS, wrk.

Every process the suite starts is recorded here and stopped by its own PID (never by
name). Every request loop takes both a maximum count and a deadline.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"
ENDPOINT = "modelyard"
BODY = b"1994,3188,5,1.5,1.62,3"
SERVER_CPU = "0"
CLIENT_CPU = 1

_started: list[subprocess.Popen[bytes]] = []


def log(message: str) -> None:
    """Progress on stderr, timestamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- processes -------------------------------------------------------------------


def spawn(
    args: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process we own; its output goes to ``log_path``; it is stopped at exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink:
        proc = subprocess.Popen(
            list(args),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process by its PID, then SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    if proc in _started:
        _started.remove(proc)


def _stop_all() -> None:
    for proc in list(_started):
        stop(proc, timeout=5.0)


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
signal.signal(signal.SIGTERM, _on_signal)


def pin_self(cpu: int) -> None:
    """Run this process (and what it starts without taskset) on one core."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from /proc/PID/status, in bytes (0 when gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def _cpu_times() -> dict[str, tuple[int, int]]:
    """Per-core (busy, total) jiffies from /proc/stat.

    Busy is user + nice + system only: irq and softirq time (the loopback TCP stack working for our own
    requests) is charged to no process, so counting it would blame our own traffic on "other work".
    """
    times: dict[str, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *fields = line.split()
            values = [int(v) for v in fields[:8]]
            times[name] = (values[0] + values[1] + values[2], sum(values))
    return times


def core_busy(seconds: float = 2.0) -> dict[str, float]:
    """Busy fraction of each core over ``seconds`` while this suite does nothing: other work on the machine."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    busy: dict[str, float] = {}
    for name, (b1, t1) in after.items():
        b0, t0 = before.get(name, (b1, t1))
        busy[name] = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    return busy


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    return sum(busy for busy, _ in _cpu_times().values()) / _TICK


def _pid_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system  # this process + children it reaped


class OtherWork:
    """CPU used by processes that are not ours (this process, its reaped children, ``pids``) over a block.

    ``cores`` is in CPU-seconds per second: 0.5 means another workload took half a core meanwhile.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.cores = 0.0

    def _ours(self) -> float:
        return _own_cpu_seconds() + sum(_pid_cpu_seconds(pid) for pid in self.pids)

    def __enter__(self) -> OtherWork:
        self._t0 = time.monotonic()
        self._busy0 = _busy_seconds()
        self._ours0 = self._ours()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._t0
        other = (_busy_seconds() - self._busy0) - (self._ours() - self._ours0)
        self.cores = max(other, 0.0) / elapsed if elapsed > 0 else 0.0


def wait_for_quiet(limit: float = 0.10, max_wait: float = 120.0) -> dict[str, object]:
    """Wait (bounded) until no core is more than ``limit`` busy with other work; returns what was seen."""
    started = time.monotonic()
    busy = core_busy()
    while max(busy.values(), default=0.0) > limit and time.monotonic() - started < max_wait:
        log(f"other work on the machine: {', '.join(f'{k} {v:.0%}' for k, v in busy.items())}; waiting")
        busy = core_busy()
    return {"busy": busy, "waited_s": round(time.monotonic() - started, 1), "quiet": max(busy.values()) <= limit}


# -- a minimal keep-alive HTTP/1.1 client ----------------------------------------


def invoke_request(target: str, body: bytes = BODY, endpoint: str = ENDPOINT) -> bytes:
    """The raw bytes of one InvokeEndpoint request (keep-alive)."""
    head = (
        f"POST /endpoints/{endpoint}/invocations HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        "Content-Type: text/csv\r\n"
        f"X-Amzn-SageMaker-Target-Model: {target}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


class Conn:
    """One keep-alive connection; ``roundtrip`` sends pre-built bytes and reads one response."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request)
        buf = self._buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            raise ConnectionError("response without Content-Length")
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        while len(buf) < total:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            buf += chunk
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        return status, body


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    with Conn(port, timeout=timeout) as conn:
        return conn.roundtrip(get_request(path))


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {series name without labels: summed value}."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if name.endswith("_bucket"):
            continue
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values


# -- the server under test ------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def metrics(self) -> dict[str, float]:
        status, body = http_get(self.port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    def stop(self) -> None:
        stop(self.proc)


def start_server(
    store: str,
    disk_cache: Path,
    *,
    name: str,
    memory: int | str = "2GiB",
    eviction: str | None = None,
    s3_endpoint: str | None = None,
    env: dict[str, str] | None = None,
    cpu: str = SERVER_CPU,
    extra: Sequence[str] = (),
) -> Server:
    """``modelyard serve`` pinned to ``cpu``, on a free loopback port, ready to answer."""
    port = free_port()
    args = [
        "taskset",
        "-c",
        cpu,
        str(VENV_BIN / "modelyard"),
        "serve",
        store,
        "--host",
        HOST,
        "--port",
        str(port),
        "--disk-cache",
        str(disk_cache),
        "--memory",
        str(memory),
        "--log-level",
        "warning",
    ]
    if eviction:
        args += ["--eviction", eviction]
    if s3_endpoint:
        args += ["--s3-endpoint-url", s3_endpoint]
    args += list(extra)
    log_path = OUT / "logs" / f"server-{name}.log"
    proc = spawn(args, log_path=log_path, env=env)  # taskset execs: proc.pid is the server's PID
    server = Server(proc, port, log_path, args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        with contextlib.suppress(OSError):
            if http_get(port, "/ping", timeout=2.0)[0] == 200:
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"the server did not become ready; see {log_path}")


@contextlib.contextmanager
def running_server(store: str, disk_cache: Path, **kwargs: Any) -> Iterator[Server]:
    server = start_server(store, disk_cache, **kwargs)
    try:
        yield server
    finally:
        server.stop()


# -- request loops ----------------------------------------------------------------------


@dataclass
class LoopResult:
    latencies_ms: list[float]
    statuses: dict[int, int]
    elapsed_s: float
    stopped_by_deadline: bool

    @property
    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200)


def timed_requests(port: int, requests: Sequence[bytes], *, max_seconds: float) -> LoopResult:
    """Send ``requests`` in order on one connection (bounded by count and deadline)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    deadline = started + max_seconds
    clock = time.perf_counter
    stopped = False
    with Conn(port) as conn:
        for raw in requests:
            t0 = clock()
            status, _ = conn.roundtrip(raw)
            t1 = clock()
            latencies.append((t1 - t0) * 1000.0)
            statuses[status] = statuses.get(status, 0) + 1
            if t1 > deadline:
                stopped = True
                break
    return LoopResult(latencies, statuses, time.perf_counter() - started, stopped)


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    if not values:
        return {f"p{p:g}": float("nan") for p in points}
    arr = np.asarray(values, dtype=np.float64)
    out = {f"p{p:g}": float(np.percentile(arr, p)) for p in points}
    out["mean"] = float(arr.mean())
    out["min"] = float(arr.min())
    out["max"] = float(arr.max())
    out["n"] = len(values)
    return out


class RssSampler:
    """Samples a PID's RSS every ``interval`` seconds on a thread (bounded by ``max_seconds``)."""

    def __init__(self, pid: int, interval: float = 0.2, max_seconds: float = 600.0) -> None:
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
            self.samples.append((time.monotonic() - started, rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    non_2xx: int
    socket_errors: str
    latency_ms: dict[str, float]
    raw: str


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _wrk_command(
    port: int, targets: Sequence[str], *, connections: int, seconds: int, name: str, cpu: int, latency: bool
) -> tuple[list[str], dict[str, str]]:
    """The wrk command line (pinned to ``cpu``) and the environment ``post.lua`` reads."""
    targets_file = OUT / f"wrk-targets-{name}.txt"
    targets_file.write_text("\n".join(targets) + "\n")
    args = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    args += [*(["--latency"] if latency else []), "-s", str(BENCH / "post.lua"), f"http://{HOST}:{port}"]
    env = {"BENCH_TARGETS_FILE": str(targets_file), "BENCH_ENDPOINT": ENDPOINT, "BENCH_BODY": BODY.decode()}
    return args, env


def run_wrk(
    port: int,
    targets: Sequence[str],
    *,
    connections: int,
    seconds: int,
    name: str,
    cpu: int = CLIENT_CPU,
) -> WrkResult:
    """``taskset -c CPU wrk -t1 -cN -dS --latency -s post.lua`` over ``targets`` picked at random."""
    args, env = _wrk_command(port, targets, connections=connections, seconds=seconds, name=name, cpu=cpu, latency=True)
    env = {**os.environ, **env}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    out = done.stdout + done.stderr
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    (OUT / "logs" / f"wrk-{name}.txt").write_text(out)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}")
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:(.*)", out)
    latency: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.MULTILINE):
        latency[f"p{pct}"] = _ms(value)
    seconds_run = 0.0
    if total:
        seconds_run = float(total.group(2)) * (60.0 if total.group(3) == "m" else 1.0)
    return WrkResult(
        requests=int(total.group(1)) if total else 0,
        seconds=seconds_run,
        requests_per_s=float(rps.group(1)) if rps else 0.0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sock.group(1).strip() if sock else "",
        latency_ms=latency,
        raw=out,
    )


def start_wrk(
    port: int, targets: Sequence[str], *, connections: int, seconds: int, name: str, cpu: int = CLIENT_CPU
) -> subprocess.Popen[bytes]:
    """wrk in the background (for profiling); stopped by its PID."""
    args, env = _wrk_command(port, targets, connections=connections, seconds=seconds, name=name, cpu=cpu, latency=False)
    return spawn(args, log_path=OUT / "logs" / f"wrk-{name}.txt", env=env)

"""The load generator behind ``modelyard bench``.

It replays a :class:`~modelyard.traffic.Trace` against any endpoint speaking
SageMaker's ``InvokeEndpoint`` (modelyard or SageMaker itself), over keep-alive
connections (aiohttp), in one of two modes:

* closed loop: ``concurrency`` workers, each sending its next request as soon as the
  previous one answered;
* open loop: requests start on a schedule (Poisson arrivals at ``rate`` per second,
  or the trace's own timestamps) whatever the server's speed; latency is measured
  from the scheduled start, so a slow server is not hidden by a polite client
  (no coordinated omission).

Each request is classified cold or warm: modelyard says so in an
``X-Modelyard-Cache`` response header; elsewhere the first request to a model in the
run counts as cold. While it runs, the server's ``/metrics`` are read every second
(when it has them) for the cache hit ratio and the loaded models over time. The
client watches its own CPU so the report can say when it, not the server, was the
bottleneck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np

from modelyard.errors import ValidationError
from modelyard.traffic import Trace

__all__ = ["LoadSpec", "MetricsPoint", "Progress", "Result", "run_load"]

CACHE_HEADER = "X-Modelyard-Cache"


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how fast and for how long."""

    url: str
    endpoint: str
    trace: Trace
    payload: bytes
    content_type: str = "text/csv"
    accept: str = "text/csv"
    concurrency: int = 8
    rate: float | None = None
    duration: float | None = None
    requests: int | None = None
    timeout: float = 60.0
    sign: Callable[[str, dict[str, str], bytes], dict[str, str]] | None = None
    metrics_interval: float = 1.0


@dataclass(slots=True)
class MetricsPoint:
    """The server's own counters at one moment of the run."""

    at: float
    hits: float
    misses: float
    loaded: float


@dataclass
class Progress:
    """Live counters, for the terminal."""

    sent: int = 0
    done: int = 0
    errors: int = 0
    elapsed: float = 0.0


@dataclass
class Result:
    """Everything measured in one run."""

    starts: np.ndarray  # seconds since the run began (scheduled start in open loop)
    latencies: np.ndarray  # seconds
    statuses: np.ndarray
    cold: np.ndarray  # bool
    codes: list[str]
    targets: list[str]
    wall_seconds: float
    client_cpu: float  # fraction of one core the client used
    schedule_lag: float  # open loop: mean seconds requests started after their schedule
    metrics: list[MetricsPoint] = field(default_factory=list)
    error_examples: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def client_bound(self) -> bool:
        """True when the load generator, not the server, limited the run."""
        return self.client_cpu > 0.9 or self.schedule_lag > 0.01


def _plan_count(spec: LoadSpec) -> int | None:
    if spec.requests is None and spec.duration is None:
        raise ValidationError("Give a number of requests or a duration.")
    if spec.rate is not None and spec.rate <= 0:
        raise ValidationError("The rate must be positive.")
    if spec.concurrency < 1:
        raise ValidationError("Concurrency must be at least 1.")
    return spec.requests


async def run_load(spec: LoadSpec, on_progress: Callable[[Progress], None] | None = None) -> Result:
    """Run the load test described by ``spec``."""
    import aiohttp

    limit = _plan_count(spec)
    url = f"{spec.url.rstrip('/')}/endpoints/{quote(spec.endpoint, safe='')}/invocations"
    names = spec.trace.names()
    total = limit if limit is not None else 10**12
    if spec.trace.times is not None:
        total = min(total, len(spec.trace))  # a timed trace is replayed once
    records: list[tuple[float, float, int, bool, str, str]] = []
    seen: set[str] = set()
    progress = Progress()
    points: list[MetricsPoint] = []
    connector = aiohttp.TCPConnector(limit=max(spec.concurrency, 1), force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    began = time.perf_counter()
    cpu_began = time.process_time()
    deadline = began + spec.duration if spec.duration is not None else None
    lags: list[float] = []
    examples: dict[str, str] = {}  # the first response of each error code

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, scheduled: float) -> None:
            target = names[index % len(names)]
            headers = {
                "Content-Type": spec.content_type,
                "Accept": spec.accept,
                "X-Amzn-SageMaker-Target-Model": target,
            }
            if spec.sign is not None:
                headers = spec.sign(url, headers, spec.payload)
            code = ""
            cold_header: str | None = None
            try:
                async with session.post(url, data=spec.payload, headers=headers) as response:
                    await response.read()
                    status = response.status
                    cold_header = response.headers.get(CACHE_HEADER)
                    if status >= 300:
                        code = response.headers.get("x-amzn-ErrorType", str(status)).split(":")[0]
                        if code not in examples:
                            examples[code] = f"{target}: {(await response.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, code = 0, type(exc).__name__
                examples.setdefault(code, f"{target}: {exc}")
            finished = time.perf_counter()
            cold = cold_header == "miss" if cold_header is not None else target not in seen
            seen.add(target)
            records.append((scheduled - began, finished - scheduled, status, cold, code, target))
            progress.done += 1
            progress.errors += status == 0 or status >= 300

        async def closed_worker(counter: list[int]) -> None:
            while counter[0] < total and (deadline is None or time.perf_counter() < deadline):
                index = counter[0]
                counter[0] += 1
                progress.sent += 1
                await one(index, time.perf_counter())

        async def open_loop() -> None:
            slots = asyncio.Semaphore(spec.concurrency)
            tasks: set[asyncio.Task[None]] = set()
            rng = np.random.default_rng(0)
            times = spec.trace.times
            next_at = began
            index = 0
            while index < total:
                if times is not None:
                    next_at = began + float(times[index % len(times)] - times[0])
                else:
                    next_at += float(rng.exponential(1.0 / spec.rate)) if spec.rate else 0.0
                if deadline is not None and next_at >= deadline:
                    break
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                lags.append(max(time.perf_counter() - next_at, 0.0))
                progress.sent += 1
                task = asyncio.get_running_loop().create_task(one(index, next_at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(lambda _: slots.release())
                index += 1
            if tasks:
                await asyncio.gather(*tasks)

        async def watch() -> None:
            while True:
                point = await _read_metrics(session, spec.url, time.perf_counter() - began)
                if point is not None:
                    points.append(point)
                elif not points:
                    return  # the endpoint has no modelyard metrics
                progress.elapsed = time.perf_counter() - began
                if on_progress is not None:
                    on_progress(progress)
                await asyncio.sleep(spec.metrics_interval)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            if spec.rate is not None or spec.trace.times is not None:
                await open_loop()
            else:
                counter = [0]
                await asyncio.gather(*(closed_worker(counter) for _ in range(spec.concurrency)))
        finally:
            watcher.cancel()
        final = await _read_metrics(session, spec.url, time.perf_counter() - began)
        if final is not None:
            points.append(final)
    wall = time.perf_counter() - began
    progress.elapsed = wall
    if on_progress is not None:
        on_progress(progress)
    records.sort()
    return Result(
        starts=np.array([r[0] for r in records], dtype=np.float64),
        latencies=np.array([r[1] for r in records], dtype=np.float64),
        statuses=np.array([r[2] for r in records], dtype=np.int64),
        cold=np.array([r[3] for r in records], dtype=bool),
        codes=[r[4] for r in records],
        targets=[r[5] for r in records],
        wall_seconds=wall,
        client_cpu=(time.process_time() - cpu_began) / wall if wall else 0.0,
        schedule_lag=float(np.mean(lags)) if lags else 0.0,
        metrics=points,
        error_examples=examples,
    )


async def _read_metrics(session: Any, url: str, at: float) -> MetricsPoint | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with session.get(f"{url.rstrip('/')}/metrics") as response:
            if response.status != 200:
                return None
            text = await response.text()
    except Exception:  # noqa: BLE001 - metrics are optional
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    if "ModelCacheHit_total" not in values:
        return None
    return MetricsPoint(
        at, values["ModelCacheHit_total"], values.get("ModelCacheMiss_total", 0.0), values.get("LoadedModelCount", 0.0)
    )

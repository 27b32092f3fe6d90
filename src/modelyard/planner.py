"""Capacity and cost planning (``modelyard plan``).

Given the models (sizes in memory, cold-start and warm costs, measured from a store
or stated), a trace of traffic and a latency objective, the planner simulates the
cache of every candidate endpoint (instance type × count) with the server's own
bookkeeping (:class:`~modelyard.policy.Residency` and the same eviction policy), so
a predicted hit ratio is what the server would do on that trace.

Latency is simulated in time, request by request, at the offered rate (Poisson
arrivals, or the trace's own timestamps), the way a modelyard instance spends it:

* every request is served by one of the instance's workers (one per vCPU, a FIFO
  queue: a request waits for those before it when all are busy), for the warm cost
  plus the server's overhead around the model;
* a miss first waits for its model's load: loads run one after another on the
  instance's load thread, so under load a cold start also waits for the loads
  queued before it; requests for a model that is still loading wait for the same
  load;
* every request also pays the round trip outside the server (HTTP client and
  network, ``client_seconds``), which the server cannot see but the caller does.

Percentiles are of the steady state: a synthetic trace is generated twice as long
as asked and only its second half counts; a replayed trace counts after its first
20 %. A load test's whole-run percentiles also include the cold starts that fill the
cache at its start. How close this comes to ``modelyard bench``: ``bench/PLANNER.md``.

Assumptions, stated in the output too: requests for a model always go to the same
instance (model affinity, hashed); an instance runs one worker per vCPU and is kept
under 70 % of its measured throughput; a month is 720 hours, as in AWS's pricing
examples.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelyard import sizing
from modelyard.artifacts import DiskCache
from modelyard.errors import ModelyardError, ValidationError
from modelyard.handlers import Loader, Model
from modelyard.instances import GIB, InstanceTable, InstanceType
from modelyard.policy import POLICIES, Residency
from modelyard.store import ObjectInfo, Store
from modelyard.traffic import Trace

__all__ = [
    "CLIENT_SECONDS",
    "Candidate",
    "ModelCosts",
    "SingleModelCost",
    "arrival_times",
    "measure_store",
    "plan",
    "simulate",
    "single_model_cost",
]

#: ``on_progress(done, total, note)``: called as the planner measures models and simulates candidates
OnProgress = Callable[[int, int, str], None]

MAX_UTILISATION = 0.7
SERVER_OVERHEAD_SECONDS = 150e-6  # per request outside the model, one core (bench/RESULTS.md)
CLIENT_SECONDS = 1e-3  # round trip outside the server: an HTTP client (boto3, aiohttp) and a short network path
FIRST_MINUTE = 60.0  # seconds from an empty cache reported apart: what a short load test sees


@dataclass
class ModelCosts:
    """Per-model costs, indexed like a trace's targets."""

    disk_bytes: np.ndarray
    memory_bytes: np.ndarray
    cold_seconds: np.ndarray
    warm_seconds: float
    measured: int = 0  # how many models were loaded to measure these

    def __post_init__(self) -> None:
        if not len(self.disk_bytes) == len(self.memory_bytes) == len(self.cold_seconds):
            raise ValueError("per-model arrays must have the same length")


@dataclass
class Simulation:
    """What one endpoint configuration does with a trace."""

    hits: int
    misses: int
    evictions: int
    latencies: np.ndarray  # seconds, of the requests after the warm-up
    victims: list[int] = field(default_factory=list)
    first_minute: np.ndarray = field(default_factory=lambda: np.empty(0))
    """Seconds, of the requests of the first minute from an empty cache: what a short load test sees."""

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def arrival_times(trace: Trace, rps: float, seed: int = 0) -> np.ndarray:
    """When each request of ``trace`` arrives, in seconds: its own timestamps, else Poisson at ``rps``."""
    if trace.times is not None:
        times: np.ndarray = np.asarray(trace.times, dtype=np.float64) - float(trace.times[0])
        return times
    if rps <= 0:
        raise ValidationError("The request rate must be positive.")
    gaps = np.random.default_rng(seed).exponential(1.0 / rps, size=len(trace))
    arrivals: np.ndarray = np.cumsum(gaps) - gaps[0]
    return arrivals


def simulate(
    trace: Trace,
    costs: ModelCosts,
    budget: int,
    *,
    count: int = 1,
    policy: str = "gdsf",
    warmup: float = 0.2,
    record_victims: bool = False,
    rps: float = 100.0,
    client_seconds: float | np.ndarray = CLIENT_SECONDS,
    workers: int = 1,
    seed: int = 0,
) -> Simulation:
    """Replay ``trace`` on ``count`` instances of ``budget`` bytes each, at ``rps`` requests per second.

    Mirrors :class:`~modelyard.cache.ModelCache`: reserve the estimate, then admit
    the measured size, through the same :class:`~modelyard.policy.Residency`.
    A model larger than the budget is a miss every time and is never admitted.
    Latencies follow the module docstring: worker queue, load-thread queue,
    client round trip. ``client_seconds`` is one value, or samples (a measured
    distribution) each request draws from; ``workers`` serve each instance's requests.
    """
    if policy not in POLICIES:
        raise ValidationError(f"Unknown eviction policy '{policy}'; use one of {', '.join(POLICIES)}.")
    instances = [Residency[int](budget, POLICIES[policy]()) for _ in range(count)]  # type: ignore[arg-type]
    owner = [zlib.crc32(t.encode()) % count for t in trace.targets] if count > 1 else [0] * len(trace.targets)
    disk = costs.disk_bytes.tolist()
    memory = costs.memory_bytes.tolist()
    cold = costs.cold_seconds.tolist()
    start = int(len(trace) * warmup)
    hits = misses = evictions = 0
    victims: list[int] = []
    service = costs.warm_seconds + SERVER_OVERHEAD_SECONDS
    arrivals = arrival_times(trace, rps, seed).tolist()
    loop_free = [[0.0] * max(workers, 1) for _ in range(count)]  # when each instance's workers are next idle
    load_free = [0.0] * count  # when each instance's load thread is next idle
    loaded_at: dict[int, float] = {}  # when a model's latest load ends
    latencies = np.empty(len(trace), dtype=np.float64)
    if isinstance(client_seconds, np.ndarray):
        outside = np.random.default_rng(seed + 1).choice(client_seconds, size=len(trace))
    else:
        outside = np.full(len(trace), client_seconds)
    for position, model in enumerate(trace.requests.tolist()):
        instance = owner[model]
        residency = instances[instance]
        now = arrivals[position]
        if model in residency:
            residency.touch(model)
            hits += position >= start
            ready = max(now, loaded_at.get(model, 0.0))
        else:
            misses += position >= start
            estimate = residency.estimate(model, disk[model])
            reservation = estimate if estimate <= budget else 0
            out, fits = residency.reserve(reservation)
            residency.release(reservation if fits else 0)
            size = residency.learn(model, disk[model], memory[model])
            if size <= budget:
                admitted, _ = residency.admit(model, size, cold[model])
                out += admitted
            evictions += len(out)
            if record_victims:
                victims += out
            ready = max(now, load_free[instance]) + cold[model]
            load_free[instance] = loaded_at[model] = ready
        if ready <= now:  # served in arrival order by the first worker free
            free = loop_free[instance]
            finished = max(now, heapq.heappop(free)) + service
            heapq.heappush(free, finished)
        else:  # served when its load ends, between the requests already queued
            finished = ready + service
        latencies[position] = finished - now
    latencies += outside
    first = latencies[: int(np.searchsorted(np.asarray(arrivals), FIRST_MINUTE))]
    return Simulation(hits, misses, evictions, latencies[start:], victims, first)


@dataclass(frozen=True)
class Candidate:
    """One endpoint configuration and what the simulation predicts for it."""

    instance: InstanceType
    count: int
    budget: int
    hit_ratio: float
    p50_ms: float
    p99_ms: float
    utilisation: float
    monthly_usd: float
    meets: bool
    first_minute_p99_ms: float = 0.0  # from an empty cache, as a one-minute load test of a fresh server sees it


@dataclass(frozen=True)
class SingleModelCost:
    """The alternative: one endpoint per model."""

    models: int
    instance: InstanceType
    count: int
    monthly_usd: float


def single_model_cost(table: InstanceTable, models: int, instance: str, count: int) -> SingleModelCost:
    """``models`` single-model endpoints of ``count`` × ``instance`` each."""
    kind = table.get(instance)
    return SingleModelCost(models, kind, count, round(table.monthly(kind, count) * models, 2))


def plan(
    trace: Trace,
    costs: ModelCosts,
    table: InstanceTable,
    *,
    rps: float,
    p99_ms: float,
    instance_types: list[str] | None = None,
    counts: list[int] | None = None,
    memory_fraction: float = 0.75,
    policy: str = "gdsf",
    warmup: float = 0.2,
    client_seconds: float | np.ndarray = CLIENT_SECONDS,
    on_progress: OnProgress | None = None,
) -> list[Candidate]:
    """Every candidate, cheapest first; ``meets`` marks those within the objective.

    Only the trace after its first ``warmup`` fraction counts (the cache fills first).
    """
    if not 0 < memory_fraction <= 1:
        raise ValidationError("The memory fraction must be in (0, 1].")
    kinds = [table.get(name) for name in instance_types] if instance_types else list(table.types.values())
    per_core = 1.0 / (costs.warm_seconds + SERVER_OVERHEAD_SECONDS)
    results: dict[tuple[int, int, int], Simulation] = {}  # same budget, count and workers: same simulation
    candidates = []
    total = len(kinds) * len(counts or [1, 2, 3, 4])
    for kind in kinds:
        budget = int(kind.memory_gib * GIB * memory_fraction)
        for count in counts or [1, 2, 3, 4]:
            sim = results.get((budget, count, kind.vcpus))
            if sim is None:
                sim = simulate(
                    trace,
                    costs,
                    budget,
                    count=count,
                    policy=policy,
                    warmup=warmup,
                    rps=rps,
                    client_seconds=client_seconds,
                    workers=kind.vcpus,
                )
                results[(budget, count, kind.vcpus)] = sim
            p50, p99 = (float(np.percentile(sim.latencies, q)) * 1000 for q in (50, 99))
            fresh = float(np.percentile(sim.first_minute, 99)) * 1000 if len(sim.first_minute) else p99
            utilisation = rps / (count * kind.vcpus * per_core)
            meets = p99 <= p99_ms and utilisation <= MAX_UTILISATION
            monthly = table.monthly(kind, count)
            candidates.append(
                Candidate(kind, count, budget, sim.hit_ratio, p50, p99, utilisation, monthly, meets, fresh)
            )
            if on_progress is not None:
                on_progress(len(candidates), total, f"{count} x {kind.name}")
    return sorted(candidates, key=lambda c: (not c.meets, c.monthly_usd, c.count, c.instance.name))


async def measure_store(
    store: Store,
    objects: list[ObjectInfo],
    *,
    sample: int,
    loader: Loader,
    workdir: Path,
    on_progress: OnProgress | None = None,
) -> ModelCosts:
    """Costs of every model in ``objects``, measured on a sample the planner loads itself.

    Sampled models get their own measured size, cold start (download, unpack, load)
    and warm latency; the others get the sample's memory/disk ratio applied to their
    size in the store and a cold start drawn from the sample's.
    """
    if not objects:
        raise ValidationError(f"The store {store.url} holds no artifacts to plan for.")
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(objects), size=min(sample, len(objects)), replace=False).tolist())
    disk = DiskCache(workdir, 1 << 62, max_unpacked=1 << 40)
    measured: dict[int, tuple[int, float]] = {}
    warm: list[float] = []
    errors: list[str] = []
    for done, index in enumerate(picked, 1):
        target = objects[index].key
        started = time.perf_counter()
        loading: list[float] = []
        try:
            artifact = await disk.fetch(store, target)
            fetched = time.perf_counter() - started
            model, size = await asyncio.to_thread(loader.load_measured, artifact.path, _timed_measure(loading))
        except ModelyardError as exc:
            errors.append(f"{target}: {exc.message}")
            if on_progress is not None:
                on_progress(done, len(picked), f"{target}: failed")
            continue
        measured[index] = (size, fetched + loading[0])
        warm.append(await asyncio.to_thread(_warm_seconds, model))
        model.unload()
        disk.release(artifact)
        if on_progress is not None:
            on_progress(done, len(picked), target)
    if not measured:
        raise ValidationError(f"None of the {len(picked)} sampled artifacts could be loaded: {errors[0]}")
    ratio = float(np.median([size / max(objects[i].size, 1) for i, (size, _) in measured.items()]))
    # the others draw their cold start from the sample's, so a slow tail in the sample stays in the plan
    colds = np.array([cold for _, cold in measured.values()])
    disk_bytes = np.array([o.size for o in objects], dtype=np.int64)
    memory = (disk_bytes * ratio).astype(np.int64)
    cold = rng.choice(colds, size=len(objects))
    for index, (size, seconds) in measured.items():
        memory[index], cold[index] = size, seconds
    return ModelCosts(disk_bytes, memory, cold, float(np.median(warm)), measured=len(measured))


def _timed_measure(seconds: list[float]) -> Callable[[Callable[[], Model]], tuple[Model, int]]:
    """:func:`sizing.measure` that also appends the load's duration to ``seconds``.

    Only the measured load counts as the model's cold start: a framework's one-time
    set-up (its import, a first unmeasured load) happens before it and is no model's.
    """

    def timed(load: Callable[[], Model]) -> tuple[Model, int]:
        began = time.perf_counter()
        result = sizing.measure(load)
        seconds.append(time.perf_counter() - began)
        return result

    return timed


def _warm_seconds(model: Model, calls: int = 50) -> float:
    """Median time of one-row requests on ``model``, as the server would run them."""
    body = ",".join(["0"] * (model.num_features or 1)).encode()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        try:
            model.invoke(body, "text/csv", "text/csv")
        except ModelyardError:
            return 0.0005  # the model wants another payload: assume half a millisecond
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))

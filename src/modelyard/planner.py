"""Capacity and cost planning (``modelyard plan``).

Given the models (sizes in memory, cold-start and warm costs, measured from a store
or stated), a trace of traffic and a latency objective, the planner simulates the
cache of every candidate endpoint (instance type × count) with the server's own
bookkeeping (:class:`~modelyard.policy.Residency` and the same eviction policy), so
a predicted hit ratio is what the server would do on that trace. A request that
hits costs the warm latency, a miss costs its model's cold start; percentiles come
from that per-request mix over the steady state: a synthetic trace is generated
twice as long as asked and only its second half counts; a replayed trace counts
after its first 20 %.

Assumptions, stated in the output too: requests for a model always go to the same
instance (model affinity, hashed); an instance runs one worker per vCPU and is kept
under 70 % of its measured throughput; a month is 720 hours, as in AWS's pricing
examples.
"""

from __future__ import annotations

import asyncio
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
    "Candidate",
    "ModelCosts",
    "SingleModelCost",
    "measure_store",
    "plan",
    "simulate",
    "single_model_cost",
]

#: ``on_progress(done, total, note)``: called as the planner measures models and simulates candidates
OnProgress = Callable[[int, int, str], None]

MAX_UTILISATION = 0.7
SERVER_OVERHEAD_SECONDS = 150e-6  # per request outside the model, one core (bench/RESULTS.md)


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
    latencies: np.ndarray
    victims: list[int] = field(default_factory=list)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def simulate(
    trace: Trace,
    costs: ModelCosts,
    budget: int,
    *,
    count: int = 1,
    policy: str = "gdsf",
    warmup: float = 0.2,
    record_victims: bool = False,
) -> Simulation:
    """Replay ``trace`` on ``count`` instances of ``budget`` bytes each.

    Mirrors :class:`~modelyard.cache.ModelCache`: reserve the estimate, then admit
    the measured size, through the same :class:`~modelyard.policy.Residency`.
    A model larger than the budget is a miss every time and is never admitted.
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
    hit_mask = np.zeros(len(trace), dtype=bool)
    victims: list[int] = []
    for position, model in enumerate(trace.requests.tolist()):
        residency = instances[owner[model]]
        if model in residency:
            residency.touch(model)
            hit_mask[position] = True
            hits += position >= start
            continue
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
    steady = trace.requests[start:]
    warm = costs.warm_seconds + SERVER_OVERHEAD_SECONDS
    latencies = np.where(hit_mask[start:], warm, costs.cold_seconds[steady] + warm)
    return Simulation(hits, misses, evictions, latencies, victims)


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
    on_progress: OnProgress | None = None,
) -> list[Candidate]:
    """Every candidate, cheapest first; ``meets`` marks those within the objective.

    Only the trace after its first ``warmup`` fraction counts (the cache fills first).
    """
    if not 0 < memory_fraction <= 1:
        raise ValidationError("The memory fraction must be in (0, 1].")
    kinds = [table.get(name) for name in instance_types] if instance_types else list(table.types.values())
    per_core = 1.0 / (costs.warm_seconds + SERVER_OVERHEAD_SECONDS)
    results: dict[tuple[int, int], Simulation] = {}  # same budget and count: same simulation
    candidates = []
    total = len(kinds) * len(counts or [1, 2, 3, 4])
    for kind in kinds:
        budget = int(kind.memory_gib * GIB * memory_fraction)
        for count in counts or [1, 2, 3, 4]:
            sim = results.get((budget, count))
            if sim is None:
                sim = simulate(trace, costs, budget, count=count, policy=policy, warmup=warmup)
                results[(budget, count)] = sim
            p50, p99 = (float(np.percentile(sim.latencies, q)) * 1000 for q in (50, 99))
            utilisation = rps / (count * kind.vcpus * per_core)
            meets = p99 <= p99_ms and utilisation <= MAX_UTILISATION
            monthly = table.monthly(kind, count)
            candidates.append(Candidate(kind, count, budget, sim.hit_ratio, p50, p99, utilisation, monthly, meets))
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
    size in the store and the sample's median cold start.
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
        try:
            artifact = await disk.fetch(store, target)
            model, size = await asyncio.to_thread(loader.load_measured, artifact.path, sizing.measure)
        except ModelyardError as exc:
            errors.append(f"{target}: {exc.message}")
            if on_progress is not None:
                on_progress(done, len(picked), f"{target}: failed")
            continue
        measured[index] = (size, time.perf_counter() - started)
        warm.append(await asyncio.to_thread(_warm_seconds, model))
        model.unload()
        disk.release(artifact)
        if on_progress is not None:
            on_progress(done, len(picked), target)
    if not measured:
        raise ValidationError(f"None of the {len(picked)} sampled artifacts could be loaded: {errors[0]}")
    ratio = float(np.median([size / max(objects[i].size, 1) for i, (size, _) in measured.items()]))
    median_cold = float(np.median([cold for _, cold in measured.values()]))
    disk_bytes = np.array([o.size for o in objects], dtype=np.int64)
    memory = (disk_bytes * ratio).astype(np.int64)
    cold = np.full(len(objects), median_cold)
    for index, (size, seconds) in measured.items():
        memory[index], cold[index] = size, seconds
    return ModelCosts(disk_bytes, memory, cold, float(np.median(warm)), measured=len(measured))


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

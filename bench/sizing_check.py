"""In-process check of the memory accounting under churn, printed as JSON on stdout.

Run pinned to one core: ``taskset -c 0 python bench/sizing_check.py STORE DISK_CACHE BUDGET``.

A :class:`modelyard.cache.ModelCache` over STORE (artifacts already unpacked in
DISK_CACHE) with a budget of BUDGET bytes gets uniformly random requests over every
model, so nearly every request loads a model and evicts another. Each load's measured
size (``modelyard.sizing.measure``) is recorded. Two variants:

* ``shipped_sequential``: modelyard as shipped, one request at a time;
* ``shipped_concurrent``: as shipped, 8 requests in flight (loads overlap evictions).

A load measured far below the typical size is accounted as (nearly) free: the cache
then keeps more models than the budget holds, and GDSF (priority ∝ cost / size) never
evicts such a model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from artifacts import ensure_artifacts
from modelyard import sizing
from modelyard.artifacts import DiskCache
from modelyard.cache import ModelCache
from modelyard.handlers import Loader, Model
from modelyard.store import open_store

Measure = Callable[[Callable[[], Model]], tuple[Model, int]]


async def run(
    store_dir: str,
    disk_dir: Path,
    budget: int,
    targets: list[str],
    *,
    concurrency: int,
    requests: int,
    max_seconds: float,
) -> dict[str, Any]:
    sizes: list[int] = []

    def recording(fn: Callable[[], Model]) -> tuple[Model, int]:
        model, size = sizing.measure(fn)
        sizes.append(size)
        return model, size

    disk = DiskCache(disk_dir, 10 * 1024**3, max_unpacked=4 * 1024**3)
    cache = ModelCache(open_store(store_dir), disk, Loader(), budget=budget, measure=recording)
    async with cache.use(targets[0]):
        pass  # the first load imports XGBoost: not a model's size
    sizes.clear()
    rng = random.Random(7)
    trace = [rng.choice(targets) for _ in range(requests)]
    deadline = time.monotonic() + max_seconds
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(trace) and time.monotonic() < deadline:
            target = trace[position]
            position += 1
            async with cache.use(target):
                pass

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    typical = statistics.median(sizes) if sizes else 0.0
    resident = cache.entries()
    result = {
        "requests": position,
        "loads": len(sizes),
        "median_measured_bytes": typical,
        "mean_measured_bytes": statistics.mean(sizes) if sizes else 0.0,
        "under_half_typical": sum(1 for s in sizes if s < typical / 2),
        "zero": sum(1 for s in sizes if s == 0),
        "resident_end": len(resident),
        "budget_models_at_typical_size": budget / typical if typical else None,
        "accounted_bytes_per_resident": cache.used / len(resident) if resident else None,
    }
    await cache.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("disk_cache", type=Path)
    parser.add_argument("budget", type=int)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args()
    targets = ensure_artifacts(2000)
    variants = {"shipped_sequential": 1, "shipped_concurrent": 8}
    out: dict[str, Any] = {"budget_bytes": args.budget}
    for name, concurrency in variants.items():
        out[name] = asyncio.run(
            run(
                args.store,
                args.disk_cache,
                args.budget,
                targets,
                concurrency=concurrency,
                requests=args.requests,
                max_seconds=args.max_seconds,
            )
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

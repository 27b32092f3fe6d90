"""``modelyard demo``: the reference workflow of SageMaker's multi-model endpoint launch.

Per-city house-price models (XGBoost) are trained in parallel and stored as
``Chicago_IL.tar.gz``, ``Houston_TX.tar.gz``... under one prefix; an endpoint is
started over the prefix; boto3's ``sagemaker-runtime`` client invokes it at random
with rows of (year built, square feet, bedrooms, bathrooms, lot acres, garage
spaces); then ``NewYork_NY.tar.gz`` is added to the running store and served at once.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import statistics
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.handlers import require
from modelyard.settings import Settings
from modelyard.store import Store, open_store
from modelyard.store.location import is_local, local_path

__all__ = ["CITIES", "city_names", "make_artifact", "run_demo", "sample_row", "train_city"]

#: (name, median price in USD, price per extra square foot)
CITIES: list[tuple[str, float, float]] = [
    ("Chicago_IL", 310_000, 130.0),
    ("Houston_TX", 260_000, 110.0),
    ("LosAngeles_CA", 820_000, 420.0),
    ("Phoenix_AZ", 380_000, 160.0),
    ("Philadelphia_PA", 270_000, 120.0),
    ("SanAntonio_TX", 250_000, 100.0),
    ("SanDiego_CA", 790_000, 390.0),
    ("Dallas_TX", 350_000, 140.0),
    ("SanJose_CA", 1_300_000, 610.0),
    ("Austin_TX", 520_000, 230.0),
    ("Seattle_WA", 760_000, 350.0),
    ("Denver_CO", 560_000, 240.0),
    ("Boston_MA", 750_000, 380.0),
    ("Miami_FL", 540_000, 260.0),
    ("Atlanta_GA", 390_000, 170.0),
    ("Portland_OR", 520_000, 230.0),
]
NEW_CITY = ("NewYork_NY", 690_000, 450.0)
FEATURES = "year built, square feet, bedrooms, bathrooms, lot acres, garage spaces"


def city_names(count: int) -> list[tuple[str, float, float]]:
    """``count`` cities: the real ones first, then numbered variants of them."""
    cities = []
    for i in range(count):
        name, median, per_sqft = CITIES[i % len(CITIES)]
        if i >= len(CITIES):
            name = f"{name}_{i // len(CITIES):03d}"
        cities.append((name, median * (1 + 0.03 * (i // len(CITIES) % 7)), per_sqft))
    return cities


def sample_row(rng: random.Random) -> list[float]:
    """One house: year built, square feet, bedrooms, bathrooms, lot acres, garage spaces."""
    bedrooms = rng.randint(1, 6)
    return [
        float(rng.randint(1951, 2021)),
        float(rng.randint(700, 1200) + 550 * bedrooms + rng.randint(-200, 400)),
        float(bedrooms),
        float(max(1.0, bedrooms - rng.choice([0.0, 0.5, 1.0, 1.5]))),
        round(rng.uniform(0.1, 2.5), 2),
        float(rng.randint(0, 3)),
    ]


def _price(row: list[float], median: float, per_sqft: float, rng: random.Random) -> float:
    year, sqft, beds, baths, lot, garage = row
    price = median + per_sqft * (sqft - 2000) + 900 * (year - 1990) + 9_000 * beds + 14_000 * baths
    price += 40_000 * lot + 11_000 * garage
    return max(50_000.0, price * rng.uniform(0.92, 1.08))


def train_city(city: tuple[str, float, float], rows: int = 1000, seed: int = 0) -> bytes:
    """Train one city's model and return it as a SageMaker-style ``model.tar.gz``."""
    xgb = require("xgboost", "xgboost")
    import numpy as np

    name, median, per_sqft = city
    rng = random.Random(f"{seed}-{name}")
    features = [sample_row(rng) for _ in range(rows)]
    prices = [_price(row, median, per_sqft, rng) for row in features]
    data = xgb.DMatrix(np.array(features, dtype=np.float32), label=np.array(prices, dtype=np.float32))
    params = {"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": seed}
    booster = xgb.train(params, data, num_boost_round=30)
    return make_artifact({"xgboost-model": bytes(booster.save_raw("ubj"))})


def make_artifact(files: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``files`` (name → content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _train_all(cities: list[tuple[str, float, float]], workers: int, progress: Callable[[], Any]) -> dict[str, bytes]:
    artifacts: dict[str, bytes] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(train_city, city): city[0] for city in cities}
        bar = progress()
        for future in as_completed(futures):
            artifacts[futures[future]] = future.result()
            bar.update(1)
        bar.close()
    return artifacts


@dataclass
class _Call:
    target: str
    row: str
    price: float
    millis: float
    cold: bool


def _invoke(client: Any, endpoint: str, target: str, row: list[float], seen: set[str]) -> _Call:
    body = ",".join(f"{v:g}" for v in row)
    started = time.perf_counter()
    response = client.invoke_endpoint(EndpointName=endpoint, TargetModel=target, ContentType="text/csv", Body=body)
    price = float(response["Body"].read().decode().strip())
    millis = (time.perf_counter() - started) * 1000
    cold = target not in seen
    seen.add(target)
    return _Call(target, body, price, millis, cold)


def _line(call: _Call) -> str:
    state = "cold" if call.cold else "warm"
    return f"  {call.target:<28} {call.row:<28} ${call.price:>12,.2f}  {call.millis:8.1f} ms ({state})"


def run_demo(
    *, models: int, requests: int, store_url: str, workspace: Path, echo: Callable[[str], None], seed: int = 7
) -> list[str]:
    """Run the whole demo; returns the invocation lines it printed."""
    boto3 = require("boto3", "demo")
    tqdm = require("tqdm", "demo")
    from modelyard.server.run import BackgroundServer

    cities = city_names(models)
    echo(f"Training {len(cities)} per-city house-price models (XGBoost) in parallel...")
    workers = max(1, min(os.cpu_count() or 1, len(cities)))
    started = time.perf_counter()
    artifacts = _train_all(cities, workers, lambda: tqdm.tqdm(total=len(cities), unit="model", ncols=80))
    sizes = [len(a) for a in artifacts.values()]
    elapsed = time.perf_counter() - started
    mean_kib = statistics.mean(sizes) / 1024
    echo(f"Trained {len(artifacts)} models in {elapsed:.1f} s (artifacts of {mean_kib:.1f} KiB on average).")

    if is_local(store_url):  # the demo's own store, in its workspace
        local_path(store_url).mkdir(parents=True, exist_ok=True)
    store = open_store(store_url)
    asyncio.run(_put_all(store, {f"{name}.tar.gz": data for name, data in artifacts.items()}))
    echo(f"Stored them under {store_url}")

    settings = Settings.load(
        store=store_url,
        port=0,
        disk_cache=workspace / "cache",
        data_dir=workspace / "data",
        log_level="warning",
        endpoint_name="house-prices",
    )
    lines: list[str] = []
    with BackgroundServer(settings) as server:
        echo(f"Endpoint 'house-prices' serving at {server.url} (boto3: endpoint_url='{server.url}')\n")
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="modelyard",
            aws_secret_access_key="modelyard",  # noqa: S106 - any key works without auth
        )
        rng = random.Random(seed)
        seen: set[str] = set()
        echo(f"  {'TargetModel':<28} {'row (' + FEATURES[:17] + '...)':<28} {'price':>13}  {'latency':>11}")
        calls = []
        for _ in range(requests):
            name = rng.choice(cities)[0]
            call = _invoke(client, "house-prices", f"{name}.tar.gz", sample_row(rng), seen)
            calls.append(call)
            lines.append(_line(call))
            echo(lines[-1])
        echo(f"\nAdding {NEW_CITY[0]}.tar.gz to the running store (no restart, no registration)...")
        asyncio.run(_put_all(store, {f"{NEW_CITY[0]}.tar.gz": train_city(NEW_CITY)}))
        for _ in range(2):
            call = _invoke(client, "house-prices", f"{NEW_CITY[0]}.tar.gz", sample_row(rng), seen)
            calls.append(call)
            lines.append(_line(call))
            echo(lines[-1])
        cold = [c.millis for c in calls if c.cold]
        warm = [c.millis for c in calls if not c.cold]
        summary = (
            f"\n{len(calls)} requests: first call to a model {statistics.median(cold):.1f} ms (median of {len(cold)})"
        )
        if warm:
            summary += f", later calls {statistics.median(warm):.1f} ms (median of {len(warm)})"
        echo(summary + ", as seen by boto3.")
    return lines


async def _put_all(store: Store, objects: dict[str, bytes]) -> None:
    await asyncio.gather(*(store.put(key, data) for key, data in objects.items()))

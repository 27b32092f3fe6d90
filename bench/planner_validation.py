"""Check the capacity planner against a real endpoint on the same traffic.

For several memory budgets, a real modelyard server is started on the same store
and `modelyard bench` replays one Zipf trace against it, one request at a time (so
the server sees the trace in order); the server's own hit and miss counters give
the real hit ratio. The planner predicts the hit ratio for the same trace and budget
twice: with every model's size and load cost measured (from the server's /cache
listing after loading each model once), and as a user would run it, from a sample of
20 models (`modelyard plan`'s measurement). Writes bench/PLANNER.md, a plot and the
raw numbers.

    .venv/bin/python bench/planner_validation.py
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.demo import city_names, train_city
from modelyard.handlers import Loader
from modelyard.planner import ModelCosts, measure_store, simulate
from modelyard.store import open_store
from modelyard.traffic import Trace, parse_distribution, synthetic_trace

HERE = Path(__file__).parent
OUT = HERE / "out" / "planner"
MODELS = 300
REQUESTS = 6000
ROOMS = (20, 40, 80, 160)
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def counters(url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


class Server:
    """A modelyard server in its own process, on loopback."""

    def __init__(self, store: Path, memory: int, cache: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [PYTHON, "-m", "modelyard", "serve", str(store), "--port", str(self.port)]
        command += ["--memory", str(memory), "--disk-cache", str(cache), "--log-level", "warning"]
        self.process = subprocess.Popen(command)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/ping", timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def make_store(root: Path) -> Path:
    store = root / "store"
    store.mkdir(parents=True, exist_ok=True)
    for city in city_names(MODELS):
        path = store / f"{city[0]}.tar.gz"
        if not path.exists():
            path.write_bytes(train_city(city, rows=300))
    return store


def full_costs(store: Path, targets: list[str], work: Path) -> ModelCosts:
    """Every model's measured size and load cost, from a server that loaded each once."""
    server = Server(store, 4 * 1024**3, work / "cache-full")
    try:
        for target in targets:
            request = urllib.request.Request(
                f"{server.url}/endpoints/modelyard/invocations",
                data=b"1994,3188,5,1.5,1.62,3",
                headers={"X-Amzn-SageMaker-Target-Model": target, "Content-Type": "text/csv"},
            )
            urllib.request.urlopen(request, timeout=30).close()
        listing = get_json(f"{server.url}/cache")
    finally:
        server.stop()
    by_target = {m["target"]: m for m in listing["models"]}
    disk = np.array([by_target[t]["diskBytes"] for t in targets])
    memory = np.array([by_target[t]["memoryBytes"] for t in targets])
    cold = np.array([by_target[t]["downloadSeconds"] + by_target[t]["loadSeconds"] for t in targets])
    return ModelCosts(disk, memory, cold, 0.0001, measured=len(targets))


def sampled_costs(store: Path, work: Path) -> tuple[list[str], ModelCosts]:
    async def run() -> tuple[list[str], ModelCosts]:
        objects = await open_store(str(store)).list()
        costs = await measure_store(
            open_store(str(store)), objects, sample=20, loader=Loader(), workdir=work / "sample"
        )
        return [o.key for o in objects], costs

    return asyncio.run(run())


def real_hit_ratio(store: Path, trace_file: Path, memory: int, work: Path) -> float:
    server = Server(store, memory, work / f"cache-{memory}")
    try:
        report = work / f"bench-{memory}.html"
        subprocess.run(
            [
                PYTHON,
                "-m",
                "modelyard",
                "bench",
                server.url,
                "--trace",
                str(trace_file),
                "--concurrency",
                "1",
                "--report",
                str(report),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        values = counters(server.url)
    finally:
        server.stop()
    hits, misses = values["ModelCacheHit_total"], values["ModelCacheMiss_total"]
    return hits / (hits + misses)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="planner-validation-") as tmp:
        work = Path(tmp)
        store = make_store(OUT)
        targets, sampled = sampled_costs(store, work)
        full = full_costs(store, targets, work)
        trace: Trace = synthetic_trace(targets, REQUESTS, parse_distribution("zipf:1.0"), seed=42)
        trace_file = work / "trace.txt"
        trace_file.write_text("".join(f"{name}\n" for name in trace.names()))
        median = int(np.median(full.memory_bytes))
        rows = []
        for room in ROOMS:
            budget = room * median
            real = real_hit_ratio(store, trace_file, budget, work)
            exact = simulate(trace, full, budget, warmup=0.0).hit_ratio
            user = simulate(trace, sampled, budget, warmup=0.0).hit_ratio
            lru = simulate(trace, full, budget, warmup=0.0, policy="lru").hit_ratio
            rows.append({"room": room, "budget": budget, "real": real, "exact": exact, "sampled": user, "lru": lru})
            print(
                f"room {room:>4}: real {real:.4f}  planner {exact:.4f} (all measured)"
                f"  {user:.4f} (sample)  lru {lru:.4f}"
            )
    (OUT / "results.json").write_text(json.dumps(rows, indent=2))
    plot(rows)
    write_markdown(rows, median)


def plot(rows: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rooms = [r["room"] for r in rows]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.plot(rooms, [r["real"] for r in rows], "o-", label="server (measured)")
    axis.plot(rooms, [r["exact"] for r in rows], "s--", label="planner, every model measured")
    axis.plot(rooms, [r["sampled"] for r in rows], "^:", label="planner, 20-model sample")
    axis.plot(rooms, [r["lru"] for r in rows], "x-.", label="plain LRU (simulated)")
    axis.set_xscale("log", base=2)
    axis.set_xticks(rooms, [str(r) for r in rooms])
    axis.set_xlabel(f"memory budget (models of median size) — {MODELS} models, {REQUESTS} Zipf requests")
    axis.set_ylabel("cache hit ratio")
    axis.legend()
    figure.savefig(HERE / "planner_validation.png", bbox_inches="tight", dpi=110)


def explanation(rows: list[dict[str, float]]) -> str:
    """Why the prediction and the server differ, in the direction they differ."""
    causes = (
        "The gaps come from sizes and load costs. The planner takes each model's size from its first load in a "
        "fresh process; a long-running server measures its reloads again and, with the heap warm, a little smaller, "
        "so it fits more models in the same budget. GDSF also weighs load costs, which the server measures anew at "
        "every load (a reload from the disk cache costs less than the first download)."
    )
    if all(r["real"] >= r["exact"] for r in rows):
        return (
            "The planner is conservative on this trace: the real server does at least as well as predicted. " + causes
        )
    return causes


def write_markdown(rows: list[dict[str, float]], median: int) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    stamp = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
    )
    lines = [
        "# Planner against a real endpoint",
        "",
        f"`bench/planner_validation.py`, {stamp}.",
        f"{MODELS} XGBoost models (median {median / 1024:.0f} KiB in memory), one Zipf (s=1.0) trace of",
        f"{REQUESTS} requests replayed in order by `modelyard bench --trace … --concurrency 1` against a real",
        "server per budget; real hit ratio from the server's `ModelCacheHit_total` and `ModelCacheMiss_total`.",
        "The planner simulates the same trace and budget with the server's eviction code (GDSF), from every",
        "model's measured size and load cost, and from a 20-model sample as `modelyard plan` does.",
        "",
        "| budget (models) | server | planner (all measured) | planner (sample) | LRU (simulated) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['room']} | {r['real']:.4f} | {r['exact']:.4f} | {r['sampled']:.4f} | {r['lru']:.4f} |")
    worst = max(abs(r["exact"] - r["real"]) for r in rows)
    worst_sample = max(abs(r["sampled"] - r["real"]) for r in rows)
    lines += [
        "",
        f"Largest gap: {worst:.4f} with every model measured, {worst_sample:.4f} from the sample.",
        "",
        explanation(rows),
        "",
        "![planner vs server](planner_validation.png)",
        "",
    ]
    (HERE / "PLANNER.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()

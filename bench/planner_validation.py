"""Check the capacity planner against a real endpoint on the same traffic.

For several memory budgets, a real modelyard server is started on the same store
and `modelyard bench` replays one Zipf trace against it, one request at a time (so
the server sees the trace in order); the server's own hit and miss counters give
the real hit ratio. The planner predicts the hit ratio for the same trace and budget
twice: with every model's size and load cost measured (from the server's /cache
listing after loading each model once), and as a user would run it, from a sample of
20 models (`modelyard plan`'s measurement).

Then latency, as `modelyard bench --rate` sees it: the same Zipf traffic is sent in
open loop (Poisson arrivals, the schedule the planner simulates, replayed as a timed
trace by bench's load generator) to a fresh server per budget and rate, and the
steady-state p50/p99 (the second half of the run, after the cache has filled) are
compared with the planner's. The round trip outside the server (aiohttp client,
loopback, this machine's scheduling) is the planner's input, not its prediction: it
is measured on a warm server at each rate and given to the planner as a distribution.
Writes bench/PLANNER.md, a plot and the
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
from modelyard.loadtest import LoadSpec, run_load
from modelyard.planner import SERVER_OVERHEAD_SECONDS, ModelCosts, arrival_times, measure_store, simulate
from modelyard.store import open_store
from modelyard.traffic import Trace, parse_distribution, synthetic_trace

HERE = Path(__file__).parent
OUT = HERE / "out" / "planner"
MODELS = 300
REQUESTS = 6000
ROOMS = (20, 40, 80, 160)
PYTHON = sys.executable
LATENCY_SECONDS = 30  # per run; the second half counts
RUNS = 3  # per point, on fresh servers; the best is kept
LATENCY_POINTS = ((40, 50), (40, 200), (400, 200), (400, 400))  # (budget in models, requests/s)
#: the stated tolerance: predicted p50 within 30 % of the measured one, p99 within a factor of two
P50_TOLERANCE, P99_FACTOR = 0.30, 2.0


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


def open_loop(url: str, trace: Trace, rps: float) -> tuple[np.ndarray, np.ndarray]:
    """Latencies (s, from each scheduled start) and statuses of ``trace`` sent on the planner's Poisson schedule."""
    timed = Trace(trace.targets, trace.requests, arrival_times(trace, rps))
    spec = LoadSpec(
        url=url,
        endpoint="modelyard",
        trace=timed,
        payload=b"1994,3188,5,1.5,1.62,3",
        concurrency=256,
        requests=len(trace),
    )
    result = asyncio.run(run_load(spec))
    return result.latencies, result.statuses


def client_round_trip(store: Path, targets: list[str], costs: ModelCosts, work: Path, rps: float) -> np.ndarray:
    """Seconds outside the server per request (client, loopback, scheduling), on a warm server at ``rps``.

    The best of :data:`RUNS` runs (lowest p99): other work on the machine only ever adds to it.
    """
    server = Server(store, 4 * 1024**3, work / f"cache-calibration-{rps}")
    runs = []
    try:
        few = Trace(targets[:20], np.arange(20, dtype=np.int64))
        open_loop(server.url, few, 20)  # load them
        trace = synthetic_trace(targets[:20], int(rps * 15), parse_distribution("uniform"), seed=3)
        for _ in range(RUNS):
            latencies, statuses = open_loop(server.url, trace, rps)
            assert (statuses == 200).all()
            runs.append(latencies)
    finally:
        server.stop()
    best = min(runs, key=lambda latencies: float(np.percentile(latencies, 99)))
    outside: np.ndarray = np.clip(best - (costs.warm_seconds + SERVER_OVERHEAD_SECONDS), 0.0, None)
    return outside


def latency_rows(store: Path, targets: list[str], costs: ModelCosts, median: int, work: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    round_trips: dict[int, np.ndarray] = {}
    for room, rps in LATENCY_POINTS:
        if rps not in round_trips:
            round_trips[rps] = client_round_trip(store, targets, costs, work, rps)
        outside = round_trips[rps]
        budget = room * median
        trace = synthetic_trace(targets, int(rps * LATENCY_SECONDS), parse_distribution("zipf:1.0"), seed=7)
        half = len(trace) // 2
        runs = []
        for attempt in range(RUNS):
            server = Server(store, budget, work / f"cache-latency-{room}-{rps}-{attempt}")
            try:
                latencies, statuses = open_loop(server.url, trace, rps)
            finally:
                server.stop()
            steady = latencies[half:][statuses[half:] == 200]
            runs.append(
                {
                    "errors": int((statuses != 200).sum()),
                    "p50": float(np.percentile(steady, 50)) * 1000,
                    "p99": float(np.percentile(steady, 99)) * 1000,
                    "all_p99": float(np.percentile(latencies[statuses == 200], 99)) * 1000,
                }
            )
        best = min(runs, key=lambda run: run["p99"])  # other work on the machine only ever slows a run down
        sim = simulate(trace, costs, budget, warmup=0.5, rps=rps, client_seconds=outside)
        fresh = simulate(trace, costs, budget, warmup=0.0, rps=rps, client_seconds=outside)
        naive = simulate(trace, costs, budget, warmup=0.5, rps=rps, client_seconds=0.0)
        row = {
            "room": room,
            "rps": rps,
            "errors": best["errors"],
            "hit_ratio": sim.hit_ratio,
            "measured_p50": best["p50"],
            "measured_p99": best["p99"],
            "measured_p99_runs": [run["p99"] for run in runs],
            "measured_all_p99": best["all_p99"],
            "planner_p50": float(np.percentile(sim.latencies, 50)) * 1000,
            "planner_p99": float(np.percentile(sim.latencies, 99)) * 1000,
            "planner_all_p99": float(np.percentile(fresh.latencies, 99)) * 1000,
            "server_only_p99": float(np.percentile(naive.latencies, 99)) * 1000,
            "outside_p50": float(np.percentile(outside, 50)) * 1000,
            "outside_p99": float(np.percentile(outside, 99)) * 1000,
            "constant_p99": float(
                np.percentile(
                    simulate(
                        trace, costs, budget, warmup=0.5, rps=rps, client_seconds=float(np.median(outside))
                    ).latencies,
                    99,
                )
            )
            * 1000,
        }
        rows.append(row)
        print(
            f"budget {room:>4} models, {rps:>4} req/s: measured p50 {row['measured_p50']:.2f} p99 "
            f"{row['measured_p99']:.2f} ms, planner p50 {row['planner_p50']:.2f} p99 {row['planner_p99']:.2f} ms"
        )
    return rows


def within(row: dict[str, Any]) -> bool:
    """Whether the prediction is within the stated tolerance of the measurement."""
    p50_ok = abs(row["planner_p50"] - row["measured_p50"]) <= P50_TOLERANCE * row["measured_p50"]
    ratio = row["planner_p99"] / row["measured_p99"]
    return bool(p50_ok and 1 / P99_FACTOR <= ratio <= P99_FACTOR)


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
        latency = latency_rows(store, targets, sampled, median, work)
    (OUT / "results.json").write_text(json.dumps({"hit_ratio": rows, "latency": latency}, indent=2))
    plot(rows)
    write_markdown(rows, median, latency)


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


def latency_markdown(latency: list[dict[str, Any]]) -> list[str]:
    trips = ", ".join(
        f"{r['rps']} req/s: p50 {r['outside_p50']:.2f} ms, p99 {r['outside_p99']:.2f} ms"
        for r in {r["rps"]: r for r in latency}.values()
    )
    lines = [
        "## Latency: planner against `bench` in open loop",
        "",
        f"The same models; Zipf (s=1.0) traffic sent in open loop for {LATENCY_SECONDS} s per run on the Poisson",
        "schedule the planner simulates (bench's load generator, up to 256 requests in flight), to a fresh server",
        f"per run, {RUNS} runs per row, the run with the lowest p99 kept (other work on this shared machine only",
        "ever slows a run down); percentiles of the second half of each run (the cache filled), as `modelyard plan`",
        "reports them. The planner simulates the server's event loop (one worker) and load thread as queues at that",
        "rate, with the 20-model sample's costs, plus the round trip outside the server (the aiohttp client, loopback",
        "and this machine's scheduling), drawn from its distribution measured on a warm server at the same rate, "
        f"best of {RUNS} runs ({trips}). That round trip is an input of the planner, not one of its predictions: "
        "`plan --client-ms` takes one constant; the last column but one is the p99 with the median as that constant.",
        f"Stated tolerance: p50 within {P50_TOLERANCE:.0%}, p99 within a factor of {P99_FACTOR:g}.",
        "",
        "| budget (models) | req/s | hit ratio (planner) | bench p50 | planner p50 | bench p99 | planner p99 | within "
        "| bench p99 of each run | bench p99, whole run | planner p99, whole run | planner p99, constant round trip "
        "| planner p99 without round trip |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in latency:
        each = " / ".join(f"{v:.1f}" for v in r["measured_p99_runs"])
        lines.append(
            f"| {r['room']} | {r['rps']} | {r['hit_ratio']:.3f} | {r['measured_p50']:.2f} | {r['planner_p50']:.2f} "
            f"| {r['measured_p99']:.2f} | {r['planner_p99']:.2f} | {'yes' if within(r) else 'no'} | {each} "
            f"| {r['measured_all_p99']:.2f} | {r['planner_all_p99']:.2f} | {r['constant_p99']:.2f} "
            f"| {r['server_only_p99']:.2f} |"
        )
    lines += [
        "",
        "Milliseconds. The whole-run p99 includes the cold starts that fill the cache at the start, which `plan`'s "
        "p99 leaves out (it plans the steady state; its `1st min p99` column is the whole-run figure of a one-minute "
        "test). The planner underestimates that fill: the first load of each model by a fresh server (download into "
        "the disk cache, the first loads of a fresh process, requests piling up behind them) costs several times the "
        "sample's cold start, so `1st min p99` is a floor, not a forecast. The last column is the planner's "
        "steady-state p99 without the round trip outside the server; before it simulated time and that round trip, "
        "`plan` printed 0.3 ms wherever every model fits, whatever the rate.",
        "",
    ]
    return lines


def write_markdown(rows: list[dict[str, float]], median: int, latency: list[dict[str, Any]]) -> None:
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
        *latency_markdown(latency),
    ]
    (HERE / "PLANNER.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()

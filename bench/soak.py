"""Soak: does the process stay within its memory budget under sustained concurrent cold traffic?

``python bench/soak.py`` (defaults: 2,000 XGBoost models, ``--memory 16MiB``, 50 concurrent
clients drawing targets from a Zipf(1) popularity, 10 minutes). The server runs pinned to
core 0, the clients (one asyncio process, aiohttp) on core 1. The server's RSS is sampled
every second and plotted (``bench/out/soak.png``, copied to ``bench/soak.png``); the verdict
and the numbers go to ``bench/SOAK.md``.

The base is the RSS of the same server holding one model (frameworks imported, first
load done). The run passes when, after the warm-up (the first 20 % of the run), every
RSS sample stays within 10 % of budget + base, the last minute is flat (its mean no more
than 2 % above the mean of the minute after the warm-up), and no request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from artifacts import ensure_artifacts, make_store
from benchlib import BENCH, BODY, CLIENT_CPU, ENDPOINT, OUT, RssSampler, log, percentiles, pin_self, running_server

MIB = 1024**2


def zipf_targets(targets: list[str], s: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Targets in popularity order (a seeded shuffle) and their Zipf probabilities."""
    rng = np.random.default_rng(seed)
    by_rank = [targets[i] for i in rng.permutation(len(targets))]
    weights = np.arange(1, len(targets) + 1, dtype=np.float64) ** -s
    return by_rank, weights / weights.sum()


async def clients(port: int, targets: list[str], weights: np.ndarray, concurrency: int, seconds: float) -> Any:
    """``concurrency`` closed-loop clients for ``seconds``; statuses, latencies and cache outcomes."""
    url = f"http://127.0.0.1:{port}/endpoints/{ENDPOINT}/invocations"
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    latencies: list[float] = []
    misses = 0
    deadline = time.monotonic() + seconds
    rng = np.random.default_rng(7)
    draws = iter(rng.choice(len(targets), size=50_000_000, p=weights))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal misses
        while time.monotonic() < deadline:
            target = targets[next(draws)]
            headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target}
            started = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as response:
                body = await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status != 200:
                    code = response.headers.get("x-amzn-ErrorType", "?")
                    errors[code] = errors.get(code, 0) + 1
                    if sum(errors.values()) <= 5:
                        log(f"{response.status} {code}: {body[:200]!r}")
                elif response.headers.get("x-modelyard-cache") == "miss":
                    misses += 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    return statuses, errors, latencies, misses


def plot(samples: list[tuple[float, int]], budget: int, base: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot([t / 60 for t, _ in samples], [r / MIB for _, r in samples], label="server RSS")
    ax.axhline((budget + base) / MIB, color="tab:green", linestyle="--", label="budget + base")
    ax.axhline(1.1 * (budget + base) / MIB, color="tab:red", linestyle=":", label="+10 %")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax.set_title("RSS under sustained concurrent cold traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--memory", default="16MiB")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--report", type=Path, default=BENCH / "SOAK.md")
    args = parser.parse_args()
    budget = int(args.memory.removesuffix("MiB")) * MIB if args.memory.endswith("MiB") else int(args.memory)
    targets = ensure_artifacts(args.models)
    store = make_store(OUT / "soak-store", targets)
    disk = OUT / "soak-disk"
    shutil.rmtree(disk, ignore_errors=True)
    pin_self(CLIENT_CPU)
    seconds = args.minutes * 60

    with running_server(str(store), disk, name="soak-base", memory=args.memory) as server:
        asyncio.run(clients(server.port, targets[:1], np.ones(1), 1, 1.0))
        time.sleep(1.0)
        base = server.rss()
    log(f"base (a server holding one model): {base / MIB:.1f} MiB; budget {budget / MIB:.1f} MiB")

    shutil.rmtree(disk, ignore_errors=True)
    by_rank, weights = zipf_targets(targets, args.zipf, seed=1)
    with running_server(str(store), disk, name="soak", memory=args.memory) as server:
        log(f"{args.concurrency} clients, Zipf({args.zipf:g}) over {len(targets)} models, {args.minutes:g} min...")
        with RssSampler(server.pid, interval=1.0, max_seconds=seconds + 30) as sampler:
            statuses, errors, latencies, misses = asyncio.run(
                clients(server.port, by_rank, weights, args.concurrency, seconds)
            )
        metrics = server.metrics()
    samples = sampler.samples
    warm = [r for t, r in samples if t >= 0.2 * seconds]
    limit = 1.1 * (budget + base)
    after_warmup = [r for t, r in samples if 0.2 * seconds <= t < 0.2 * seconds + 60]
    last_minute = [r for t, r in samples if t >= seconds - 60]
    drift = (np.mean(last_minute) / np.mean(after_warmup) - 1) if after_warmup and last_minute else float("nan")
    requests = sum(statuses.values())
    failed = requests - statuses.get(200, 0)
    within = bool(warm) and max(warm) <= limit
    flat = bool(drift <= 0.02)
    verdict = "PASS" if within and flat and failed == 0 else "FAIL"

    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / "soak.png"
    plot(samples, budget, base, png)
    shutil.copy(png, BENCH / "soak.png")
    lat = percentiles(latencies)
    result = {
        "models": len(targets),
        "budget_bytes": budget,
        "base_rss_bytes": base,
        "concurrency": args.concurrency,
        "seconds": seconds,
        "requests": requests,
        "failed": failed,
        "errors": errors,
        "miss_ratio": misses / max(statuses.get(200, 0), 1),
        "evictions": metrics.get("ModelEvictions_total"),
        "rss_max_after_warmup_bytes": max(warm) if warm else None,
        "rss_limit_bytes": limit,
        "drift_last_minute": drift,
        "latency_ms": lat,
        "verdict": verdict,
    }
    (OUT / "soak.json").write_text(json.dumps(result, indent=2))
    machine = f"{Path('/proc/cpuinfo').read_text().count('processor')} cores"
    lines = [
        "# Soak: memory under sustained concurrent cold traffic",
        "",
        f"`python bench/soak.py` on {time.strftime('%Y-%m-%d')}, {machine}, Python 3.11, Debian 12; server pinned "
        "to core 0, clients on core 1.",
        "",
        f"{len(targets):,} XGBoost models, budget {budget / MIB:g} MiB, {args.concurrency} concurrent clients, "
        f"Zipf({args.zipf:g}), {args.minutes:g} minutes.",
        "",
        "| | |",
        "|---|---|",
        f"| requests | {requests:,} ({requests / seconds:,.0f}/s), {failed} failed {errors or ''} |",
        f"| cache misses | {result['miss_ratio']:.1%} of answered requests |",
        f"| latency p50 / p99 | {lat['p50']:.1f} / {lat['p99']:.1f} ms |",
        f"| base RSS (one model held) | {base / MIB:.1f} MiB |",
        f"| budget + base | {(budget + base) / MIB:.1f} MiB (limit +10 %: {limit / MIB:.1f} MiB) |",
        f"| RSS after warm-up, max | {max(warm) / MIB if warm else float('nan'):.1f} MiB |",
        f"| drift, last minute vs first minute after warm-up | {drift:+.1%} |",
        f"| verdict | **{verdict}** |",
        "",
        "![RSS over the run](soak.png)",
        "",
    ]
    args.report.write_text("\n".join(lines))
    log(
        f"{verdict}: RSS max after warm-up {max(warm) / MIB if warm else 0:.1f} MiB (limit {limit / MIB:.1f}), "
        f"drift {drift:+.1%}, {failed} failed of {requests:,}; see {args.report}"
    )
    if verdict != "PASS":
        raise SystemExit(1)


if __name__ == "__main__":
    main()

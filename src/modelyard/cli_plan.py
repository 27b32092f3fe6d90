"""``modelyard plan``: size an endpoint before paying for it (see :mod:`modelyard.planner`)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli_store import check_store
from modelyard.errors import ModelyardError
from modelyard.progress import Progress

if TYPE_CHECKING:
    from modelyard.planner import Candidate, ModelCosts, SingleModelCost
    from modelyard.traffic import Trace

__all__ = ["plan_command"]


def _bytes(text: str) -> int:
    from pydantic import ByteSize, TypeAdapter
    from pydantic import ValidationError as PydanticError

    try:
        return int(TypeAdapter(ByteSize).validate_python(text))
    except PydanticError:
        raise click.BadParameter(f"'{text}' is not a size such as 64KiB or 2GiB") from None


def _costs(
    store_url: str | None, models: int, memory: int, cold_ms: float, warm_ms: float, sample: int
) -> tuple[list[str], ModelCosts]:
    import numpy as np

    from modelyard.planner import ModelCosts, measure_store

    if store_url is None:
        targets = [f"model-{i:06d}" for i in range(models)]
        n = len(targets)
        costs = ModelCosts(np.full(n, memory // 4), np.full(n, memory), np.full(n, cold_ms / 1000), warm_ms / 1000)
        return targets, costs
    from modelyard.handlers import Loader
    from modelyard.store import open_store

    check_store(store_url, hint=": there are no models to plan for there")
    click.echo(f"Listing the models in {store_url}...", err=True)

    async def run() -> tuple[list[str], ModelCosts]:
        store = open_store(store_url)
        objects = [o for o in await store.list() if not o.key.endswith("/")]
        picked = min(sample, len(objects))
        with (
            tempfile.TemporaryDirectory(prefix="modelyard-plan-") as workdir,
            Progress(f"Measuring {picked} of {len(objects):,} models", picked, note_lines=True) as line,
        ):
            costs = await measure_store(
                store,
                objects,
                sample=sample,
                loader=Loader(),
                workdir=Path(workdir),
                on_progress=lambda done, _, note: line.update(done, note=note),
            )
        return [o.key for o in objects], costs

    return asyncio.run(run())


def _table(candidates: list[Candidate], limit: int) -> list[str]:
    head = f"{'instance type':<16}{'count':>6}{'budget':>10}{'hit ratio':>11}{'p50 ms':>9}{'p99 ms':>10}"
    head += f"{'1st min p99':>13}{'CPU':>6}{'USD/month':>13}"
    lines = [head, "-" * len(head)]
    for c in candidates[:limit]:
        budget = f"{c.budget / 1024**3:.1f}GiB"
        mark = "  ok" if c.meets else ""
        lines.append(
            f"{c.instance.name:<16}{c.count:>6}{budget:>10}{c.hit_ratio:>11.3f}{c.p50_ms:>9.2f}{c.p99_ms:>10.2f}"
            f"{c.first_minute_p99_ms:>13.2f}{c.utilisation:>6.0%}{c.monthly_usd:>13,.2f}{mark}"
        )
    return lines


def _comparison(best: Candidate, single: SingleModelCost, hours: float) -> list[str]:
    saving = single.monthly_usd - best.monthly_usd
    share = saving / single.monthly_usd if single.monthly_usd else 0.0
    return [
        f"Single-model endpoints: {single.models:,} x {single.count} x {single.instance.name} at "
        f"{single.instance.usd_per_hour:g} USD/h = {single.monthly_usd:,.2f} USD/month",
        f"Multi-model endpoint:   {best.count} x {best.instance.name} at {best.instance.usd_per_hour:g} USD/h "
        f"= {best.monthly_usd:,.2f} USD/month",
        f"Saving:                 {saving:,.2f} USD/month ({share:.2%}), months of {hours:g} hours",
    ]


@click.command("plan", short_help="Recommend the cheapest endpoint for models and traffic.")
@click.argument("store", required=False)
@click.option(
    "--models", type=click.IntRange(1), default=1000, show_default=True, help="Models, when no STORE is given."
)
@click.option("--model-memory", default="64KiB", show_default=True, help="Memory per model, when no STORE is given.")
@click.option(
    "--cold-ms", type=click.FloatRange(0), default=1000.0, show_default=True, help="Cold start, when no STORE."
)
@click.option(
    "--warm-ms", type=click.FloatRange(0), default=17.0, show_default=True, help="Warm latency, when no STORE."
)
@click.option("--sample", type=click.IntRange(1), default=20, show_default=True, help="Artifacts loaded to measure.")
@click.option("--rps", type=click.FloatRange(0, min_open=True), default=100.0, show_default=True, help="Requests/s.")
@click.option("--distribution", default="zipf:1.0", show_default=True, help="uniform, zipf or zipf:S.")
@click.option("--trace", "trace_file", type=click.Path(path_type=Path, dir_okay=False), help="Replay a trace instead.")
@click.option("--requests", type=click.IntRange(100), default=100_000, show_default=True, help="Simulated requests.")
@click.option(
    "--p99-ms",
    type=click.FloatRange(0, min_open=True),
    default=100.0,
    show_default=True,
    help="Objective: p99 latency as the caller sees it, once the cache has filled.",
)
@click.option(
    "--client-ms",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    help="Round trip outside the server (HTTP client, network), added to every request.",
)
@click.option("--instance-type", "instance_types", multiple=True, help="Candidate type (repeatable; default: all).")
@click.option(
    "--instance-count", "counts", type=click.IntRange(1, 64), multiple=True, help="Candidate count (repeatable)."
)
@click.option("--memory-fraction", type=click.FloatRange(0, 1, min_open=True), default=0.75, show_default=True)
@click.option("--eviction", type=click.Choice(["gdsf", "lru"]), default="gdsf", show_default=True)
@click.option("--single-model-instance", default="ml.c5.large", show_default=True, help="Per-model endpoint type.")
@click.option("--single-model-count", type=click.IntRange(1), default=2, show_default=True, help="Its instances.")
@click.option("--instances", "instances_file", type=click.Path(path_type=Path, dir_okay=False), help="Price table.")
@click.option("--limit", type=click.IntRange(1), default=12, show_default=True, help="Rows of the table.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plan_command(store: str | None, **options: Any) -> None:
    """Recommend the cheapest endpoint for your models and traffic, and what it saves.

    \b
    Measures the models in STORE (or takes --models/--model-memory/--cold-ms), simulates
    the cache of each candidate instance type and count on the traffic, and compares
    the monthly cost with one single-model endpoint per model. The AWS launch example:
      modelyard plan --models 1000 --instance-type ml.r5.2xlarge --instance-count 2
    """
    try:
        _run(store, **options)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from exc


def _run(store: str | None, **o: Any) -> None:
    import numpy as np

    from modelyard.instances import InstanceTable
    from modelyard.planner import ModelCosts, plan, single_model_cost
    from modelyard.traffic import Trace, parse_distribution, read_trace, synthetic_trace

    table = InstanceTable.load(o["instances_file"])
    single = single_model_cost(table, 0, o["single_model_instance"], o["single_model_count"])  # checks the name
    memory = _bytes(o["model_memory"])
    targets, costs = _costs(store, o["models"], memory, o["cold_ms"], o["warm_ms"], o["sample"])
    trace: Trace
    warmup = 0.2
    if o["trace_file"] is not None:
        replay = read_trace(o["trace_file"])
        index = {t: i for i, t in enumerate(targets)}
        missing = [t for t in replay.targets if t not in index]
        if store is not None and missing:
            raise click.ClickException(f"The trace names {len(missing)} models not in the store, e.g. '{missing[0]}'.")
        if store is None:
            targets = replay.targets
            n = len(targets)
            costs = ModelCosts(
                np.full(n, memory // 4), np.full(n, memory), np.full(n, o["cold_ms"] / 1000), costs.warm_seconds
            )
            trace = replay
        else:
            trace = Trace(targets, np.array([index[replay.targets[i]] for i in replay.requests], dtype=np.int64))
    else:
        trace = synthetic_trace(targets, 2 * o["requests"], parse_distribution(o["distribution"]))
        warmup = 0.5
    progress = Progress("Simulating the cache of each candidate", None)
    candidates = plan(
        trace,
        costs,
        table,
        rps=o["rps"],
        p99_ms=o["p99_ms"],
        instance_types=list(o["instance_types"]) or None,
        counts=list(o["counts"]) or None,
        memory_fraction=o["memory_fraction"],
        client_seconds=o["client_ms"] / 1000,
        policy=o["eviction"],
        warmup=warmup,
        on_progress=lambda done, total, note: _simulated(progress, done, total, note),
    )
    progress.close()
    single = single_model_cost(table, len(targets), o["single_model_instance"], o["single_model_count"])
    best = candidates[0]
    if o["as_json"]:
        click.echo(
            json.dumps({"candidates": [_plain(c) for c in candidates], "single_model": _plain(single)}, indent=2)
        )
        return
    measured = f"{costs.measured} loaded from the store" if costs.measured else "as stated"
    click.echo(
        f"{len(targets):,} models ({measured}): {np.mean(costs.memory_bytes) / 1024:.0f} KiB in memory on average, "
        f"cold {np.median(costs.cold_seconds) * 1000:.1f} ms, warm {costs.warm_seconds * 1000:.2f} ms."
    )
    traffic = "trace" if o["trace_file"] else str(parse_distribution(o["distribution"]))
    counted = len(trace) - int(len(trace) * warmup)
    click.echo(
        f"Traffic: {counted:,} requests ({traffic}) after {len(trace) - counted:,} to warm the cache, "
        f"at {o['rps']:g} req/s; objective p99 <= {o['p99_ms']:g} ms."
    )
    click.echo(
        "Latency: at that rate, queued on each instance's workers (one per vCPU) and load thread, plus "
        f"{o['client_ms']:g} ms outside the server (--client-ms; a real client's jitter adds to the tail), once the "
        "cache has filled. '1st min p99' is the first minute from an empty cache, what a one-minute load test of a "
        "fresh server sees, at least: a fresh server's first loads cost more (bench/PLANNER.md)."
    )
    click.echo(f"Prices: {table.source}, {table.date}.\n")
    click.echo("\n".join(_table(candidates, o["limit"])))
    verdict = "Recommended" if best.meets else "No candidate meets the objective; closest"
    click.echo(
        f"\n{verdict}: {best.count} x {best.instance.name} ({best.hit_ratio:.1%} hits, p99 {best.p99_ms:.1f} ms)."
    )
    click.echo("\n".join(_comparison(best, single, table.hours_per_month)))


def _simulated(progress: Progress, done: int, total: int, note: str) -> None:
    progress.total = total
    progress.update(done, note=note)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(asdict(value), default=str))

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.errors import ValidationError
from modelyard.instances import InstanceTable
from modelyard.planner import ModelCosts, plan, simulate, single_model_cost
from modelyard.traffic import Trace, parse_distribution, synthetic_trace


def uniform_costs(models: int, memory: int = 1000, cold: float = 1.0, warm: float = 0.001) -> ModelCosts:
    return ModelCosts(np.full(models, memory // 4), np.full(models, memory), np.full(models, cold), warm)


def test_article_costs_are_reproduced_exactly() -> None:
    table = InstanceTable.load()
    assert single_model_cost(table, 1000, "ml.c5.large", 2).monthly_usd == 171_360.00
    assert table.monthly(table.get("ml.r5.2xlarge"), 2) == 1_016.64
    assert single_model_cost(table, 10, "ml.c5.large", 2).monthly_usd == 1_713.60
    assert table.monthly(table.get("ml.c5.large"), 2) == 171.36


def test_cli_prints_the_article_table() -> None:
    result = CliRunner().invoke(
        main, ["plan", "--models", "1000", "--instance-type", "ml.r5.2xlarge", "--instance-count", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "1,000 x 2 x ml.c5.large at 0.119 USD/h = 171,360.00 USD/month" in result.output
    assert "2 x ml.r5.2xlarge at 0.706 USD/h = 1,016.64 USD/month" in result.output
    assert "Saving:                 170,343.36 USD/month (99.41%)" in result.output
    result = CliRunner().invoke(
        main, ["plan", "--models", "10", "--instance-type", "ml.c5.large", "--instance-count", "2"]
    )
    assert "= 1,713.60 USD/month" in result.output
    assert "= 171.36 USD/month" in result.output
    assert "(90.00%)" in result.output


def test_simulation_counts_hits_and_respects_the_budget() -> None:
    trace = Trace(["a", "b", "c"], np.array([0, 1, 0, 2, 0, 1, 1, 1]))
    sim = simulate(trace, uniform_costs(3), budget=2000, warmup=0.0, record_victims=True)
    assert (sim.hits, sim.misses) == (4, 4)
    assert sim.evictions == len(sim.victims) == 2
    big = simulate(trace, uniform_costs(3), budget=10_000, warmup=0.0)
    assert (big.hits, big.misses, big.evictions) == (5, 3, 0)
    too_small = simulate(trace, uniform_costs(3, memory=5000), budget=2000, warmup=0.0)
    assert too_small.hits == 0


def test_gdsf_beats_lru_in_the_planner_too() -> None:
    trace = synthetic_trace([f"m{i}" for i in range(1000)], 60_000, parse_distribution("zipf:1.0"), seed=1)
    costs = uniform_costs(1000)
    lru = simulate(trace, costs, budget=100_000, policy="lru")
    gdsf = simulate(trace, costs, budget=100_000, policy="gdsf")
    assert gdsf.hit_ratio > lru.hit_ratio + 0.04


def test_affinity_splits_models_across_instances() -> None:
    trace = synthetic_trace([f"m{i}" for i in range(400)], 40_000, parse_distribution("uniform"), seed=2)
    one = simulate(trace, uniform_costs(400), budget=100_000, count=1)
    four = simulate(trace, uniform_costs(400), budget=100_000, count=4)
    assert four.hit_ratio > one.hit_ratio + 0.3  # four instances hold about four times the models


def test_plan_recommends_the_cheapest_configuration_meeting_the_objective() -> None:
    trace = synthetic_trace([f"m{i}" for i in range(500)], 100_000, parse_distribution("zipf:1.0"), seed=4)
    costs = uniform_costs(500, memory=16 * 1024**2, cold=0.5, warm=0.002)  # 8 GiB in all
    table = InstanceTable.load()
    candidates = plan(
        trace,
        costs,
        table,
        rps=100,
        p99_ms=50,
        instance_types=["ml.c5.large", "ml.r5.large"],
        counts=[1, 2],
        warmup=0.5,
    )
    best = candidates[0]
    assert best.meets
    assert (best.instance.name, best.count) == ("ml.r5.large", 1)  # 12 GiB holds them all
    assert best.p99_ms < 50
    assert all(not c.meets for c in candidates if c.instance.name == "ml.c5.large" and c.count == 1)
    assert [c.monthly_usd for c in candidates if c.meets] == sorted(c.monthly_usd for c in candidates if c.meets)


def test_cpu_bound_candidates_do_not_meet_the_objective() -> None:
    trace = synthetic_trace([f"m{i}" for i in range(10)], 2000, parse_distribution("uniform"))
    candidates = plan(
        trace, uniform_costs(10), InstanceTable.load(), rps=100_000, p99_ms=1000, instance_types=["ml.c5.large"]
    )
    assert not any(c.meets for c in candidates)


def test_instance_table_can_be_extended(tmp_path: Path) -> None:
    extra = tmp_path / "prices.json"
    extra.write_text(
        json.dumps(
            {"source": "my quote", "instances": {"ml.custom": {"vcpus": 4, "memory_gib": 8, "usd_per_hour": 0.1}}}
        )
    )
    table = InstanceTable.load(extra)
    assert table.get("ml.custom").usd_per_hour == 0.1
    assert "my quote" in table.source
    extra.write_text('{"instances": {"x": {"vcpus": "many"}}}')
    with pytest.raises(ValidationError, match="must map"):
        InstanceTable.load(extra)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instance-type", "ml.nope"], "Unknown instance type 'ml.nope'"),
        (["--distribution", "pareto"], "Unknown distribution"),
        (["--single-model-instance", "ml.nope"], "Unknown instance type"),
        (["--model-memory", "lots"], "is not a size"),
    ],
)
def test_bad_inputs_are_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["plan", "--models", "5", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_trace_and_empty_store(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text("a\n1 b\n")
    result = CliRunner().invoke(main, ["plan", "--trace", str(trace)])
    assert result.exit_code == 1
    assert "t.txt:2" in result.output
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["plan", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "holds no artifacts" in result.output


def test_plan_measures_a_real_store(tmp_path: Path) -> None:
    from tests.fixtures import xgb_artifact

    store = tmp_path / "store"
    store.mkdir()
    for i in range(6):
        (store / f"m{i}.tar.gz").write_bytes(xgb_artifact(i % 3))
    result = CliRunner().invoke(main, ["plan", str(store), "--sample", "3", "--requests", "2000", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # progress goes to stderr
    assert doc["single_model"]["models"] == 6
    assert doc["candidates"][0]["meets"]
    assert 0 < doc["candidates"][0]["hit_ratio"] <= 1


@pytest.mark.anyio
async def test_simulator_and_server_make_the_same_eviction_decisions(tmp_path: Path) -> None:
    """The planner replays a trace through the same Residency and policy as the server's cache."""
    from tests.fixtures import dummy_artifact
    from tests.test_cache import Harness

    rng = np.random.default_rng(11)
    models = 30
    sizes = [int(s) for s in rng.integers(500, 4000, size=models)]
    colds = [float(c) for c in rng.uniform(0.01, 2.0, size=models)]
    names = [f"m{i:02d}.dummy.json" for i in range(models)]
    trace = synthetic_trace(names, 1500, parse_distribution("zipf:0.9"), seed=5)
    budget = 12_000

    harness = Harness(tmp_path, budget=budget, cost=lambda target, _: colds[names.index(target)])
    disk = []
    for name, size in zip(names, sizes, strict=True):
        artifact = dummy_artifact(size=size)
        disk.append(len(artifact))
        await harness.store.put(name, artifact)
    for name in trace.names():
        await harness.call(name)

    costs = ModelCosts(np.array(disk), np.array(sizes), np.array(colds), 0.001)
    gdsf = simulate(trace, costs, budget, warmup=0.0, record_victims=True)
    lru = simulate(trace, costs, budget, policy="lru", warmup=0.0, record_victims=True)
    assert harness.handler.unloads == [names[i] for i in gdsf.victims]
    assert gdsf.victims != lru.victims  # a trace where the policies disagree
    assert gdsf.hit_ratio == pytest.approx(harness.events.counts["hit"] / len(trace))


def timed(targets: list[str], requests: list[int], times: list[float]) -> Trace:
    return Trace(targets, np.array(requests, dtype=np.int64), np.array(times, dtype=np.float64))


def test_cold_starts_queue_on_the_load_thread() -> None:
    """Five different models requested at once load one after another: the last waits for four loads."""
    from modelyard.planner import SERVER_OVERHEAD_SECONDS

    trace = timed([f"m{i}" for i in range(5)], [0, 1, 2, 3, 4], [0.0] * 5)
    sim = simulate(trace, uniform_costs(5, cold=0.010, warm=0.0), budget=100_000, warmup=0.0, client_seconds=0.0)
    assert sim.latencies == pytest.approx([0.010 * (i + 1) + SERVER_OVERHEAD_SECONDS for i in range(5)])


def test_requests_for_a_loading_model_wait_for_the_same_load() -> None:
    trace = timed(["m0"], [0, 0, 0], [0.0, 0.004, 0.030])
    sim = simulate(trace, uniform_costs(1, cold=0.010, warm=0.0), budget=100_000, warmup=0.0, client_seconds=0.0)
    assert (sim.hits, sim.misses) == (2, 1)
    assert sim.latencies[1] == pytest.approx(0.006, abs=0.001)  # the rest of the load, not a warm hit
    assert sim.latencies[2] < 0.001  # loaded by then


def test_warm_requests_queue_on_the_event_loop_at_the_offered_rate() -> None:
    trace = synthetic_trace(["m0", "m1"], 20_000, parse_distribution("uniform"))
    costs = uniform_costs(2, cold=0.001, warm=0.001)  # about 870 requests/s on one event loop
    light = simulate(trace, costs, budget=100_000, rps=100, client_seconds=0.0)
    heavy = simulate(trace, costs, budget=100_000, rps=800, client_seconds=0.0)
    assert np.percentile(light.latencies, 50) == pytest.approx(0.00115, rel=0.05)  # no wait at 12% busy
    assert np.percentile(heavy.latencies, 99) > 10 * np.percentile(light.latencies, 99)  # 92% busy: queues
    assert light.hit_ratio == heavy.hit_ratio == 1.0


def test_the_round_trip_outside_the_server_is_added_to_every_request() -> None:
    trace = synthetic_trace(["m0"], 1000, parse_distribution("uniform"))
    costs = uniform_costs(1, cold=0.001, warm=0.0)
    bare = simulate(trace, costs, budget=100_000, client_seconds=0.0)
    constant = simulate(trace, costs, budget=100_000, client_seconds=0.002)
    assert constant.latencies - bare.latencies == pytest.approx(np.full(len(bare.latencies), 0.002))
    measured = np.array([0.001, 0.001, 0.001, 0.050])  # a measured distribution with a tail
    drawn = simulate(trace, costs, budget=100_000, client_seconds=measured)
    assert np.percentile(drawn.latencies, 99) > 0.049
    assert np.percentile(drawn.latencies, 50) < 0.002


def test_the_first_minute_from_an_empty_cache_is_reported_apart() -> None:
    trace = synthetic_trace([f"m{i}" for i in range(300)], 60_000, parse_distribution("zipf:1.0"))
    costs = uniform_costs(300, cold=0.050, warm=0.0005)
    sim = simulate(trace, costs, budget=10**9, rps=200, warmup=0.5)
    assert len(sim.first_minute) == pytest.approx(12_000, rel=0.05)
    assert np.percentile(sim.latencies, 99) < 0.005  # steady state: every model resident
    assert np.percentile(sim.first_minute, 99) > 0.050  # the cold starts that fill the cache


def test_plan_prints_a_latency_it_can_explain() -> None:
    result = CliRunner().invoke(
        main,
        [
            *("plan", "--models", "200", "--rps", "200", "--warm-ms", "0.5", "--cold-ms", "50"),
            *("--instance-type", "ml.m5.large", "--instance-count", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1st min p99" in result.output
    assert "plus 1 ms outside the server (--client-ms" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("ml.m5.large"))
    p50, p99, first = (float(v) for v in row.split()[4:7])
    assert 1.0 < p50 <= p99 < first  # the client's round trip, then cold starts of the first minute

"""Hostile artifacts: what the checks before each native loader cost, and what fuzzing the loaders finds.

One command, about 10 minutes on 2 cores::

    .venv/bin/python bench/hostile.py                # --cases 300 mutants per format and mode
    .venv/bin/python bench/hostile.py --cases 50     # a quick look

Writes ``bench/HOSTILE.md`` (raw numbers in ``bench/out/hostile/results.json``,
crashing inputs in ``bench/out/hostile/crashers``).

1. Fuzzing (``bench/fuzz_loaders.py``): mutants of real models, each loaded in a
   forked child, once as modelyard loads it now (``guarded``) and once as the
   frameworks load it alone (``raw``, what modelyard did before): how many loaded,
   were refused by the checks, raised an error, or killed the process.
2. Cost: the checks against the framework's own load, on models of about 10 KiB,
   1 MB and 100 MB (a big booster: thousands of trees), best of several runs.
   Fuzzing runs first: the timing section starts OpenMP, and a child forked after
   that can hang.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fuzz_loaders import OUT, OUTCOMES, ROOT, build_bases, fuzz

REPORT = ROOT / "bench" / "HOSTILE.md"


def best(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs, in seconds (the machine is shared: the minimum is the cost)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def xgboost_models(sizes: tuple[tuple[str, int], ...]) -> Iterator[tuple[str, bytes]]:
    """XGBoost models of about 10 KiB, 1 MB and 100 MB, JSON and UBJSON: 200 trees of depth 8 repeated.

    Made one at a time, smallest first: a 100 MB model held in memory slowed the
    small loads measured after it twentyfold.
    """
    import xgboost as xgb
    from tests.fixtures import booster_bytes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 20)).astype(np.float32)
    booster = xgb.train({"max_depth": 8, "nthread": 1}, xgb.DMatrix(x, label=x @ rng.normal(size=20)), 200)
    base = json.loads(bytes(booster.save_raw("json")))
    for fmt in ("json", "ubj"):
        yield f"10 KiB {fmt}", booster_bytes(0, fmt)
    for label, size in sizes:
        for fmt in ("json", "ubj"):
            per_tree = len(booster.save_raw(fmt)) / 200
            document = json.loads(json.dumps(base))
            model = document["learner"]["gradient_booster"]["model"]
            trees = [dict(model["trees"][i % 200], id=i) for i in range(max(1, round(size / per_tree)))]
            model |= {"trees": trees, "tree_info": [0] * len(trees), "iteration_indptr": list(range(len(trees) + 1))}
            model["gbtree_model_param"]["num_trees"] = str(len(trees))
            grown = xgb.Booster()
            grown.load_model(bytearray(json.dumps(document).encode()))
            del document, model, trees
            yield f"{label} {fmt}", bytes(grown.save_raw(fmt))
            del grown


def lightgbm_models(sizes: tuple[tuple[str, int], ...]) -> Iterator[tuple[str, bytes]]:
    """LightGBM text models of about 10 KiB, 1 MB and 100 MB: 100 trees of 63 leaves repeated."""
    import lightgbm as lgb
    from tests.fixtures import lightgbm_text

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 20))
    params = {"verbose": -1, "num_threads": 1, "num_leaves": 63, "seed": 0}
    text = str(lgb.train(params, lgb.Dataset(x, x @ rng.normal(size=20)), num_boost_round=100).model_to_string())
    head, rest = text.split("\n\nTree=0\n", 1)
    trees, tail = rest.split("\n\n\nend of trees\n", 1)
    blocks = re.split(r"\n\n\nTree=\d+\n", trees)
    head = re.sub(r"\ntree_sizes=[^\n]*", "", head)  # LightGBM loads without it, one tree after the other
    yield "10 KiB", lightgbm_text(0)
    for label, size in sizes:
        count = max(1, round(size / (len(trees) / len(blocks))))
        body = "\n\n\n".join(f"Tree={i}\n{blocks[i % len(blocks)]}" for i in range(count))
        yield label, f"{head}\n\nTree=0\n{body[len('Tree=0') + 1 :]}\n\n\nend of trees\n{tail}".encode()


def timing(repeats: int, quick: bool) -> list[dict[str, Any]]:
    """The checks against each framework's own load, each model timed in a fresh process.

    The models are made here, one at a time; each is timed by ``--time-one`` in a
    process of its own: in this one, after a training or a 100 MB model, a 10 KiB
    XGBoost load took 6-12 ms instead of 0.1. Each is timed twice that way, the
    best of both kept: XGBoost's load starts threads, slow to wake when other work
    holds the cores.
    """
    from tests.fixtures import onnx_bytes

    sizes = (("1 MB", 1 << 20),) if quick else (("1 MB", 1 << 20), ("100 MB", 100 << 20))
    folder = OUT / "timing"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def measure(framework: str, name: str, file: str, data: bytes) -> None:
        path = folder / name.replace(" ", "-") / file
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        runs = max(2, repeats // 3) if len(data) > 50 << 20 else repeats
        command = [sys.executable, __file__, "--time-one", framework, str(path), str(runs)]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}:{ROOT / 'bench'}"}
        rounds = []
        for _ in range(2):  # two processes, apart in time: other work on the cores can slow a whole process
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
        best_of = {key: min(r[key] for r in rounds) for key in rounds[0]}
        rows.append({"model": name, "bytes": len(data)} | best_of)
        print(f"  {name}: {rows[-1]}", file=sys.stderr, flush=True)
        path.unlink()

    for name, data in xgboost_models(sizes):
        measure("xgboost", f"XGBoost {name}", "model.json" if name.endswith("json") else "model.ubj", data)
    for name, data in lightgbm_models(sizes):
        measure("lightgbm", f"LightGBM {name}", "model.txt", data)
    for name, make in (("10 KiB", partial(onnx_bytes, 0)), ("100 MB", _big_onnx))[: 1 if quick else 2]:
        measure("onnx", f"ONNX {name}", "model.onnx", make())
    return rows


def time_one(framework: str, path: Path, runs: int) -> dict[str, float]:
    """Check, framework load and modelyard's whole load of one model file, best of ``runs``."""
    from modelyard.handlers import HANDLERS

    data = path.read_bytes()
    check: Callable[[], object]
    load: Callable[[], object]
    if framework == "xgboost":
        import xgboost as xgb

        from modelyard.handlers.xgboost import check_xgboost_model

        check, load = partial(check_xgboost_model, data), partial(_xgboost_load, xgb, data)
    elif framework == "lightgbm":
        import lightgbm as lgb

        from modelyard.handlers.lightgbm_checks import prepare_model_text

        check, load = partial(prepare_model_text, data), partial(lgb.Booster, model_str=prepare_model_text(data))
    else:
        import onnxruntime as ort

        from modelyard.handlers.onnx_checks import check_external_data

        check = partial(check_external_data, data, path.parent)
        load = partial(ort.InferenceSession, data, providers=["CPUExecutionProvider"])
    whole = partial(HANDLERS[framework].load, path, trusted=False)
    return {"check": best(check, runs), "load": best(load, runs), "handler": best(whole, runs)}


def _xgboost_load(xgb: Any, data: bytes) -> None:
    xgb.Booster().load_model(bytearray(data))


def _big_onnx() -> bytes:
    """A 100 MB ONNX model: one MatMul by a 5,000 x 5,000 float32 initializer."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((5000, 5000), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 5000])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 5000])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("xgboost-cpu", "lightgbm", "onnxruntime", "numpy"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"- Machine: {os.cpu_count()} cores ({cpu}), {memory:.1f} GiB,"
        f" Linux {platform.release()}, Python {platform.python_version()}; shared with other work (best-of-N timings)",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Packages: {versions}",
    ]


def report(results: dict[str, Any], cases: int, took: float) -> str:
    lines = [
        "# Hostile artifacts",
        "",
        "Produced by `.venv/bin/python bench/hostile.py` "
        f'({took / 60:.0f} min). See `docs/frameworks.md`, "Hostile artifacts", for what the checks refuse.',
        "",
    ]
    lines += [*machine(), "", f"## Fuzzing: {cases} mutants per format and mode", ""]
    lines += ["| format | loaded as | " + " | ".join(OUTCOMES) + " |", "|---|---|" + "---:|" * len(OUTCOMES)]
    for mode in ("raw", "guarded"):
        for target, counts in results["fuzz"][mode].items():
            label = "the framework alone (before)" if mode == "raw" else "modelyard (checks first)"
            lines.append(f"| {target} | {label} | " + " | ".join(str(counts.get(o, 0)) for o in OUTCOMES) + " |")
    lines += [
        "",
        "*killed*: the child process died (segfault, abort, division by zero, or still running after 20 s).",
        "*refused*: a 400 naming the problem, from modelyard's checks; *raised*: the framework's own error.",
        "",
    ]
    lines += [
        "## Cost of the checks",
        "",
        "| model | size | check | the framework's load | check ÷ load | modelyard's whole load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["timing"]:
        lines.append(
            f"| {row['model']} | {row['bytes'] / 2**20:,.2f} MiB | {row['check'] * 1e3:,.2f} ms | "
            f"{row['load'] * 1e3:,.2f} ms | {row['check'] / row['load']:.2f} | {row['handler'] * 1e3:,.2f} ms |"
        )
    lines += [
        "",
        "*the framework's load*: `Booster.load_model`, `lightgbm.Booster(model_str=...)` (without `tree_sizes`,",
        "as modelyard now loads it: one tree after the other), `InferenceSession`. *modelyard's whole load*: the",
        "handler's, check included, with what it adds (XGBoost's prediction probe, ONNX's first run on zeros).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=300, help="mutants per format and mode")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=6, help="timing runs per model (a third for 100 MB ones)")
    parser.add_argument("--quick", action="store_true", help="no 100 MB models")
    parser.add_argument("--time-one", nargs=3, metavar=("FRAMEWORK", "FILE", "RUNS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:
        framework, file, runs = args.time_one
        print(json.dumps(time_one(framework, Path(file), int(runs))))
        return
    started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    build_bases(OUT / "bases")
    results: dict[str, Any] = {"fuzz": {}}
    for mode in ("raw", "guarded"):
        print(f"fuzzing, {mode}...", file=sys.stderr, flush=True)
        results["fuzz"][mode] = fuzz(args.cases, args.seed, mode == "guarded", OUT / "bases")
    print("timing...", file=sys.stderr, flush=True)
    results["timing"] = timing(args.repeats, args.quick)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=dict))
    REPORT.write_text(report(results, args.cases, time.monotonic() - started))
    print(REPORT.read_text())


if __name__ == "__main__":
    main()

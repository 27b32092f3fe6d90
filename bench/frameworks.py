"""Cold start, warm latency and memory per framework: ``python bench/frameworks.py``.

Trains ``--models`` small house-price models per framework (XGBoost, LightGBM,
scikit-learn, ONNX, an ``inference.py``, an MLflow model), stores them in a local folder and serves
them from a ``modelyard serve --trust-store`` pinned to core 0 (a fresh one per
framework); this process is the client, on core 1, over one keep-alive connection.

* cold start: the first request to each model (local store, empty disk cache);
* warm latency: one model per framework, SageMaker route (CSV row) and V2 route
  (JSON tensor), after a warm-up;
* bare predict: the framework's own one-row predict in process (core 0, server
  stopped) on a pre-built array; the serving overhead is warm p50 minus bare p50;
* memory: server RSS growth over the cold pass ÷ the sizes the cache measured.

Needs the test extra (``pip install -e '.[test]'``: every framework and skl2onnx).

Writes ``bench/out/frameworks.json`` and the "Frameworks" section of
``bench/RESULTS.md`` (between its markers; the rest of the file is left alone).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import CLIENT_CPU, HOST, OUT, Conn, log, percentiles, pin_self, start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
WORK = Path(tempfile.gettempdir()) / "modelyard-bench-frameworks"  # outside the repo: it holds .py files
FRAMEWORKS = ("xgboost", "lightgbm", "sklearn", "onnx", "python", "mlflow")
ROW = [1994.0, 3188.0, 5.0, 1.5, 1.62, 3.0]
COLUMNS = ["year", "sqft", "beds", "baths", "lot", "garage"]  # the MLflow model's signature
BODY = b"1994,3188,5,1.5,1.62,3"
COLD_TARGET_MS = 20.0
OVERHEAD_TARGET_MS = 0.3
START, END = "<!-- frameworks:start -->", "<!-- frameworks:end -->"

INFERENCE_PY = b"""
import os

import numpy as np


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "weights.npy"))


def predict_fn(data, model):
    return data @ model
"""


# -- models ---------------------------------------------------------------------


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.integers(1950, 2020, 400),
            rng.integers(500, 5000, 400),
            rng.integers(1, 6, 400),
            rng.integers(1, 5, 400),
            rng.uniform(0.1, 3, 400),
            rng.integers(0, 4, 400),
        ]
    ).astype(np.float64)
    y = x[:, 1] * (150 + seed) + (x[:, 0] - 1950) * 900 + x[:, 2] * 10_000 + rng.normal(0, 5000, 400)
    return x, y


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def train(framework: str, seed: int) -> tuple[str, bytes]:
    """An artifact name and its bytes: a small model like the AWS article's (~10 trees)."""
    x, y = _data(seed)
    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.train({"max_depth": 3, "nthread": 1, "seed": seed}, xgb.DMatrix(x, label=y), 10)
        return f"xgb-{seed}.tar.gz", _tar({"xgboost-model": bytes(booster.save_raw("ubj"))})
    if framework == "lightgbm":
        import lightgbm as lgb

        params = {"verbose": -1, "num_threads": 1, "num_leaves": 8, "seed": seed}
        lgb_booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=10)
        return f"lgb-{seed}.tar.gz", _tar({"model.txt": lgb_booster.model_to_string().encode()})
    if framework == "sklearn":
        import joblib
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=10, max_depth=3, random_state=seed).fit(x, y)
        buffer = io.BytesIO()
        joblib.dump(forest, buffer)
        return f"forest-{seed}.joblib", buffer.getvalue()
    if framework == "onnx":
        from skl2onnx import to_onnx
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=10, max_depth=3, random_state=seed).fit(x, y)
        return f"forest-{seed}.onnx", bytes(to_onnx(forest, x[:1].astype(np.float32)).SerializeToString())
    if framework == "mlflow":
        return f"mlflow-forest-{seed}.tar.gz", _tar(_mlflow_model(x, y, seed))
    weights = io.BytesIO()
    np.save(weights, np.linalg.lstsq(x, y, rcond=None)[0])
    return f"linear-{seed}.tar.gz", _tar({"code/inference.py": INFERENCE_PY, "weights.npy": weights.getvalue()})


def _mlflow_model(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, bytes]:
    """The files of a forest saved by ``mlflow.sklearn.save_model``, with the signature of its DataFrame."""
    import warnings

    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's import-time and integer-column hints
        import mlflow.sklearn
        from mlflow.models import infer_signature

        frame = pd.DataFrame(x, columns=COLUMNS)
        forest = RandomForestRegressor(n_estimators=10, max_depth=3, random_state=seed).fit(frame, y)
        folder = WORK / "mlflow-saved" / str(seed)
        mlflow.sklearn.save_model(
            forest,
            str(folder),
            signature=infer_signature(frame, forest.predict(frame)),
            pip_requirements=["scikit-learn", "skops"],
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bare_predictor(framework: str, artifact: Path, scratch: Path) -> Callable[[], Any]:
    """The framework's own one-row predict on a pre-built array, as its users would call it."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if artifact.name.endswith(".tar.gz"):
        with tarfile.open(artifact) as archive:
            archive.extractall(scratch, filter="data")
    else:
        shutil.copy(artifact, scratch / artifact.name)
    row64 = np.array([ROW])
    row32 = row64.astype(np.float32)
    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray((scratch / "xgboost-model").read_bytes()))
        booster.set_param({"nthread": 1})
        return lambda: booster.inplace_predict(row32)
    if framework == "lightgbm":
        import lightgbm as lgb

        lgb_booster = lgb.Booster(model_file=str(scratch / "model.txt"))
        return lambda: lgb_booster.predict(row64, num_threads=1)
    if framework == "sklearn":
        import joblib

        forest = joblib.load(scratch / artifact.name)
        return lambda: forest.predict(row64)
    if framework == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(scratch / artifact.name), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: row32})
    if framework == "mlflow":
        import warnings

        import pandas as pd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mlflow.pyfunc

        pyfunc = mlflow.pyfunc.load_model(str(scratch))
        frame = pd.DataFrame(row64, columns=COLUMNS)
        return lambda: pyfunc.predict(frame)
    weights = np.load(scratch / "weights.npy")
    return lambda: row64 @ weights


# -- requests -------------------------------------------------------------------


def sagemaker_request(target: str) -> bytes:
    head = (
        "POST /endpoints/modelyard/invocations HTTP/1.1\r\n"
        f"Host: {HOST}\r\nContent-Type: text/csv\r\n"
        f"X-Amzn-SageMaker-Target-Model: {target}\r\nContent-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def v2_request(target: str) -> bytes:
    body = json.dumps({"inputs": [{"name": "rows", "datatype": "FP64", "shape": [1, 6], "data": ROW}]}).encode()
    head = (
        f"POST /v2/models/{target}/infer HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def timed(conn: Conn, request: bytes, count: int, deadline: float) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status, body = conn.roundtrip(request)
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"request failed with {status}: {body[:300]!r}")
        if time.perf_counter() > deadline:
            break
    return latencies


def bare_p50_ms(predict: Callable[[], Any], count: int, deadline: float) -> float:
    for _ in range(min(500, count)):
        predict()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        predict()
        times.append((time.perf_counter() - started) * 1000)
        if time.perf_counter() > deadline:
            break
    return float(np.median(times))


def server_rss(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * 4096


def cache_sizes(port: int) -> dict[str, int]:
    with Conn(port) as conn:
        status, body = conn.roundtrip(f"GET /cache HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    if status != 200:
        raise RuntimeError(f"/cache answered {status}")
    return {m["target"]: int(m["memoryBytes"]) for m in json.loads(body)["models"]}


# -- the run --------------------------------------------------------------------


def run(models: int, warm: int, max_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + max_seconds
    store = WORK / "store"
    shutil.rmtree(WORK, ignore_errors=True)
    store.mkdir(parents=True)
    names: dict[str, list[str]] = {}
    log(f"training {models} models per framework")
    for framework in FRAMEWORKS:
        names[framework] = []
        for seed in range(models):
            name, data = train(framework, seed)
            (store / name).write_bytes(data)
            names[framework].append(name)
    results: dict[str, Any] = {"models_per_framework": models, "frameworks": {}}
    pin_self(CLIENT_CPU)
    for framework in FRAMEWORKS:  # a fresh server each: no framework reuses another's freed memory
        log(f"{framework}: cold starts, memory, warm latency")
        disk = WORK / f"disk-{framework}"
        server = start_server(str(store), disk, name=f"frameworks-{framework}", extra=["--trust-store"])
        try:
            results["frameworks"][framework] = measure_framework(
                server.port, server.pid, names[framework], warm, deadline
            )
        finally:
            server.stop()
    pin_self(0)  # the bare loops run where the server ran, with the server stopped
    for framework in FRAMEWORKS:
        predict = bare_predictor(framework, store / names[framework][0], WORK / "bare" / framework)
        bare = bare_p50_ms(predict, warm, time.perf_counter() + 30)
        row = results["frameworks"][framework]
        row["bare_predict_p50_ms"] = bare
        row["overhead_p50_ms"] = row["warm_ms"]["p50"] - bare
    return results


def measure_framework(port: int, pid: int, names: list[str], warm: int, deadline: float) -> dict[str, Any]:
    """Cold starts and memory over ``names`` (the first one apart), then warm latency on it."""
    with Conn(port) as conn:
        first = timed(conn, sagemaker_request(names[0]), 1, time.perf_counter() + 60)
        rss_before = server_rss(pid)
        cold = [timed(conn, sagemaker_request(name), 1, time.perf_counter() + 60)[0] for name in names[1:]]
        rss_grown = server_rss(pid) - rss_before
        end = time.perf_counter() + max(deadline - time.monotonic(), 1.0) / 5
        timed(conn, sagemaker_request(names[0]), 500, end)
        warm_sm = timed(conn, sagemaker_request(names[0]), warm, end)
        timed(conn, v2_request(names[0]), 500, end)
        warm_v2 = timed(conn, v2_request(names[0]), warm, end)
    sizes = cache_sizes(port)
    measured = sum(sizes[name] for name in names[1:] if name in sizes)
    return {
        "first_model_ms": first[0],
        "cold_ms": percentiles(cold),
        "warm_ms": percentiles(warm_sm),
        "warm_v2_ms": percentiles(warm_v2),
        "measured_bytes_per_model": measured / max(len(cold), 1),
        "rss_bytes_per_model": rss_grown / max(len(cold), 1),
        "rss_over_measured": rss_grown / measured if measured else float("nan"),
    }


# -- the report -----------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "✅ met" if ok else "❌ missed"


def render(results: dict[str, Any]) -> str:
    rows = results["frameworks"]
    lines = [
        START,
        "## Frameworks: cold start, warm latency and memory per framework",
        "",
        f"Produced by `python bench/frameworks.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
        f"{results['models_per_framework']} small house-price models per framework (10 trees, or a linear "
        "`inference.py`; the MLflow model is a forest saved by `mlflow.sklearn.save_model`, whose bare predict "
        "is `pyfunc.predict` on a one-row DataFrame), local folder store, a fresh `modelyard serve --trust-store` "
        "per framework pinned to core 0, client on core 1 over one keep-alive connection. First = the first "
        "request to the server (it also imports the framework when that waits for a first model, and loads "
        "the model twice: unmeasured, then measured). Cold = first request to a model (download from "
        "the local store, unpack, load, measure, predict); warm = the same model again, one CSV row "
        "(SageMaker route) or one FP64 tensor (V2 route). Bare predict = the framework's own one-row predict "
        "on a pre-built array, in process on core 0 with the server stopped. Overhead = warm p50 − bare p50: "
        "HTTP, routing, decoding and encoding.",
        "",
        "| framework | first (ms) | cold p50 / p90 (ms) | target ≤ 20 ms |  | warm p50 / p99 (ms) "
        "| V2 warm p50 (ms) | bare predict p50 (ms) | overhead p50 (ms) | target ≤ 0.3 ms |  |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for framework, row in rows.items():
        cold, warm = row["cold_ms"], row["warm_ms"]
        lines.append(
            f"| {framework} | {row['first_model_ms']:.0f} | {cold['p50']:.2f} / {cold['p90']:.2f} | ≤ 20 "
            f"| {_verdict(cold['p50'] <= COLD_TARGET_MS)} "
            f"| {warm['p50']:.3f} / {warm['p99']:.3f} | {row['warm_v2_ms']['p50']:.3f} "
            f"| {row['bare_predict_p50_ms']:.3f} | {row['overhead_p50_ms']:.3f} | ≤ 0.3 "
            f"| {_verdict(row['overhead_p50_ms'] <= OVERHEAD_TARGET_MS)} |"
        )
    lines += [
        "",
        "Memory: each framework runs in a fresh server; its resident set growth over the cold pass (first model "
        "excluded: it pays for the framework's one-time set-up) against the sizes the cache measured for those "
        "models. 1.0 is exact; below 1 the budget over-counts (safe), above 1 it under-counts.",
        "",
        "| framework | measured per model | RSS growth per model | RSS ÷ measured |",
        "|---|---|---|---|",
    ]
    for framework, row in rows.items():
        lines.append(
            f"| {framework} | {row['measured_bytes_per_model'] / 1024:.1f} KiB "
            f"| {row['rss_bytes_per_model'] / 1024:.1f} KiB | {row['rss_over_measured']:.2f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Replace this script's section of RESULTS.md, or append it; nothing else changes."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# modelyard benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=40, help="models per framework (cold starts)")
    parser.add_argument("--warm", type=int, default=3000, help="warm requests per framework and route")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop the warm loops by then")
    args = parser.parse_args()
    results = run(args.models, args.warm, args.max_seconds)
    (OUT / "frameworks.json").write_text(json.dumps(results, indent=2))
    write_section(render(results))
    log(f"wrote {OUT / 'frameworks.json'} and the Frameworks section of {RESULTS_MD}")
    print(render(results))


if __name__ == "__main__":
    main()

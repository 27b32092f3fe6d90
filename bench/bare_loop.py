"""The in-process baselines for warm throughput, printed as JSON on stdout.

Run pinned to the server's core: ``taskset -c 0 python bench/bare_loop.py ARTIFACT``.

* ``inplace_predict``: a plain loop over ``booster.inplace_predict(np.array([[row]], float32))``
  on the artifact's ``xgboost-model`` with ``nthread=1`` (the "bare" rate);
* ``modelyard_invoke``: modelyard's own model object, ``Loader().load(dir).invoke(body, 'text/csv', '')``;
* the pieces of that invoke (decode, predict, encode), to see where a warm request goes;
* ``experiment_reused_proxy_predict``: a reference for the handler's predict: the same C call
  (``XGBoosterPredictFromDense``) with one proxy DMatrix created once and reused. With a NULL
  proxy, as modelyard passed before commit d3ee90e, XGBoost builds a new proxy and ``Context``
  per call, which reads cgroup files (~60 µs → ~30 µs per one-row call on this machine).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from modelyard import codecs
from modelyard.handlers import Loader

BODY = b"1994,3188,5,1.5,1.62,3"
# the prediction arguments modelyard's XGBoost handler passes (a copy: not a public name)
PREDICT_ARGS = (
    b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, '
    b'"missing": NaN, "strict_shape": false, "cache_id": 0}'
)
ROW = [[1994, 3188, 5, 1.5, 1.62, 3]]


def rate(fn: Callable[[], Any], *, seconds: float, max_calls: int = 5_000_000, warmup: int = 2_000) -> dict[str, float]:
    """Calls per second of ``fn`` in a tight loop, bounded by ``seconds`` and ``max_calls``."""
    for _ in range(warmup):
        fn()
    gc.disable()
    try:
        calls = 0
        started = time.perf_counter()
        deadline = started + seconds
        while calls < max_calls:
            for _ in range(256):
                fn()
            calls += 256
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return {"calls": calls, "seconds": elapsed, "calls_per_s": calls / elapsed, "us_per_call": elapsed / calls * 1e6}


class ReusedProxyPredictor:
    """``XGBoosterPredictFromDense`` with one proxy DMatrix for all calls (single thread only)."""

    def __init__(self, booster: Any) -> None:
        from xgboost.core import _LIB, _check_call

        self._lib = _LIB
        self._check = _check_call
        self._handle = booster.handle
        self._call = _LIB.XGBoosterPredictFromDense
        self._proxy = ctypes.c_void_p()
        _check_call(_LIB.XGProxyDMatrixCreate(ctypes.byref(self._proxy)))
        self._shape = ctypes.POINTER(ctypes.c_uint64)()
        self._dims = ctypes.c_uint64()
        self._out = ctypes.POINTER(ctypes.c_float)()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        n, m = rows.shape
        address = rows.__array_interface__["data"][0]
        interface = (
            f'{{"data": [{address}, true], "shape": [{n}, {m}], "strides": null, "typestr": "<f4", "version": 3}}'
        ).encode()
        shape, dims, out = self._shape, self._dims, self._out
        self._check(
            self._call(
                self._handle,
                interface,
                PREDICT_ARGS,
                self._proxy,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(out),
            )
        )
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        count = math.prod(out_shape)
        result = np.empty(count, dtype=np.float32)
        ctypes.memmove(result.ctypes.data, out, 4 * count)
        return result.reshape(out_shape)

    def close(self) -> None:
        self._check(self._lib.XGDMatrixFree(self._proxy))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with tarfile.open(args.artifact) as archive:
            archive.extractall(root, filter="data")

        booster = xgb.Booster()
        booster.load_model(bytearray((root / "xgboost-model").read_bytes()))
        booster.set_param({"nthread": 1})
        model = Loader().load(root)

    prebuilt = np.array(ROW, dtype=np.float32)
    decoded = model.decode(BODY, "text/csv")
    predicted = model.predict(decoded)
    expected = float(booster.inplace_predict(prebuilt)[0])
    got = float(model.invoke(BODY, "text/csv", "")[0])
    reused = ReusedProxyPredictor(booster)
    probe = np.zeros((2, decoded.shape[1]), dtype=np.float32)
    probe[1, :] = np.nan
    same = bool(np.array_equal(reused(probe), booster.inplace_predict(probe), equal_nan=True))
    seconds = args.seconds
    results: dict[str, Any] = {
        "prediction_bare": expected,
        "prediction_modelyard": got,
        "inplace_predict": rate(lambda: booster.inplace_predict(np.array(ROW, dtype=np.float32)), seconds=seconds),
        "inplace_predict_prebuilt_array": rate(lambda: booster.inplace_predict(prebuilt), seconds=seconds / 2),
        "modelyard_invoke": rate(lambda: model.invoke(BODY, "text/csv", ""), seconds=seconds),
        "modelyard_decode": rate(lambda: model.decode(BODY, "text/csv"), seconds=seconds / 3),
        "modelyard_predict": rate(lambda: model.predict(decoded), seconds=seconds / 3),
        "modelyard_encode": rate(lambda: model.encode(predicted, ""), seconds=seconds / 3),
        "modelyard_accept_check": rate(lambda: codecs.accept_type(""), seconds=seconds / 6),
        "experiment_reused_proxy_predict": rate(lambda: reused(decoded), seconds=seconds / 3),
        "experiment_reused_proxy_matches_inplace_predict": same,
    }
    reused.close()
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""XGBoost, following the SageMaker XGBoost container's artifact rules.

The model file is ``xgboost-model`` (JSON or UBJ) or a single
``*.json``/``*.ubj``/``*.bst`` XGBoost model. A pickled Booster (older SageMaker
containers save one) runs code on load, so it loads only from a trusted store.
XGBoost's old binary format is refused: XGBoost 3 no longer reads it.

XGBoost trusts the model it loads: a file nested 100,000 deep overflows the load
thread's stack, a child index outside its tree is read out of bounds, and either
kills the whole process. So every model is parsed and checked first
(:func:`check_xgboost_model`: :mod:`~modelyard.handlers.structure` for the document,
:mod:`~modelyard.handlers.xgboost_checks` for the trees), and anything XGBoost would
not have written is refused with the reason. What the check costs next to
XGBoost's own load, on models of 10 KiB to 100 MB, is in ``bench/HOSTILE.md``.

One-row predictions are dominated by overhead, not by the trees. The public
``inplace_predict`` spends ~90 µs per call building JSON arguments and wrappers in
Python, and the C entry point it calls (``XGBoosterPredictFromDense``) creates a
proxy DMatrix per call whose constructor reads the cgroup CPU quota from /sys
(~60 µs). So each thread keeps one proxy DMatrix, each model keeps its arguments
pre-encoded, and the C entry point is called directly: ~15-30 µs for one row. The
fast path is checked against ``inplace_predict`` when the model loads and is only
used when both agree.
"""

from __future__ import annotations

import ctypes
import math
import os
import pickle
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers.base import Handler, Model, require
from modelyard.handlers.structure import StructureError, parse_json, parse_ubjson
from modelyard.handlers.xgboost_checks import check_model

__all__ = ["XGBoostHandler", "XGBoostModel"]

_MODEL_NAME = "xgboost-model"
_LOCATION = re.compile(r"^\[[\d:]+\]\s+\S+:\d+:\s*")
_SUFFIXES = (".json", ".ubj", ".bst", ".model")
_PREDICT_ARGS = (
    b'{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, '
    b'"missing": NaN, "strict_shape": false, "cache_id": 0}'
)


def check_xgboost_model(data: bytes | bytearray) -> None:
    """Raise StructureError unless XGBoost can load ``data`` without risking the process.

    XGBoost 3.2 reads only JSON and UBJSON: a document opening with ``{``, then (after
    whitespace) a quote for JSON or a letter for UBJSON. The same rule picks the parser
    here, so both read the bytes the same way (:mod:`modelyard.handlers.structure`),
    then the model's invariants are checked (:mod:`modelyard.handlers.xgboost_checks`).
    """
    if data[:4] == b"binf" or data[:1] != b"{":
        raise StructureError(
            "it is neither JSON nor UBJSON; XGBoost no longer reads its old binary format: "
            "load it with the XGBoost that saved it and save it again as model.json or model.ubj"
        )
    at = 1
    while at < len(data) and data[at] in b" \t\n\r\x0b\x0c":
        at += 1
    first = data[at : at + 1]
    if first == b'"':
        document = parse_json(data)
    elif first.isalpha():
        document = parse_ubjson(data)
    else:
        raise StructureError("it is an empty or malformed document")
    check_model(document, file_size=len(data))


def _looks_like_xgboost(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(256)
    if path.suffix in (".json", ".ubj"):
        return b"learner" in head
    return True


class _Proxy:
    """One thread's proxy DMatrix, freed when the thread ends."""

    def __init__(self, lib: Any, check: Any) -> None:
        self._lib = lib
        self.handle = ctypes.c_void_p()
        check(lib.XGProxyDMatrixCreate(ctypes.byref(self.handle)))

    def __del__(self) -> None:
        self._lib.XGDMatrixFree(self.handle)


class _ThreadProxies(threading.local):
    proxy: _Proxy | None = None


_proxies = _ThreadProxies()


class _DirectPredictor:
    """Calls ``XGBoosterPredictFromDense`` with pre-built arguments (see module doc)."""

    def __init__(self, booster: Any, lib: Any, check: Any) -> None:
        self._handle = booster.handle
        self._lib = lib
        self._call = lib.XGBoosterPredictFromDense
        self._check = check

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        proxy = _proxies.proxy
        if proxy is None:
            proxy = _proxies.proxy = _Proxy(self._lib, self._check)
        n, m = rows.shape
        interface = (
            f'{{"data": [{rows.ctypes.data}, true], "shape": [{n}, {m}], '
            f'"strides": null, "typestr": "<f4", "version": 3}}'
        ).encode()
        # fresh out-parameters per call: a model may predict on several threads at once
        shape, dims, out = ctypes.POINTER(ctypes.c_uint64)(), ctypes.c_uint64(), ctypes.POINTER(ctypes.c_float)()
        refs = (ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out))
        self._check(self._call(self._handle, interface, _PREDICT_ARGS, proxy.handle, *refs))
        if dims.value == 1 and (n := int(shape[0])) <= 64:
            return np.array(out[:n], dtype=np.float32)  # ~1 µs; a numpy view of the buffer costs ~5
        out_shape = tuple(int(shape[i]) for i in range(dims.value))
        return np.ctypeslib.as_array(out, shape=(math.prod(out_shape),)).reshape(out_shape).copy()


class XGBoostModel(Model):
    """A loaded XGBoost Booster, predicting on one thread."""

    handler = "xgboost"

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        self.num_features = int(booster.num_features()) or None
        self._fast: _DirectPredictor | None = None
        self._fast = self._checked_fast_path()

    def _checked_fast_path(self) -> _DirectPredictor | None:
        try:
            from xgboost.core import _LIB, _check_call

            fast = _DirectPredictor(self.booster, _LIB, _check_call)
            probe = np.zeros((2, self.num_features or 1), dtype=np.float32)
            probe[1, :] = np.nan
            if np.array_equal(fast(probe), self.booster.inplace_predict(probe), equal_nan=True):
                return fast
        except Exception:  # noqa: BLE001 - any doubt means the public API is used
            return None
        return None

    def predict(self, data: Any) -> Any:
        rows = np.ascontiguousarray(data, dtype=np.float32)
        try:
            if self._fast is not None:
                return self._fast(rows)
            return self.booster.inplace_predict(rows)
        except Exception as exc:  # XGBoostError and friends: the model refused the input
            raise ModelError(f"XGBoost could not predict: {str(exc).splitlines()[0]}") from exc

    def unload(self) -> None:
        self._fast = None
        self.booster = None


class XGBoostHandler(Handler):
    """Loads XGBoost models from SageMaker-style artifacts."""

    name = "xgboost"
    module = "xgboost"

    def find(self, root: Path) -> Path | None:
        named = sorted(root.rglob(_MODEL_NAME))
        if named:
            return named[0]
        candidates = [p for p in sorted(root.rglob("*")) if p.suffix in _SUFFIXES and p.is_file()]
        candidates = [p for p in candidates if _looks_like_xgboost(p)]
        return candidates[0] if len(candidates) == 1 else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        xgb = require("xgboost", "xgboost")
        with model_file.open("rb") as file:
            pickled = file.read(1) == b"\x80"  # a pickle protocol header
            if pickled:
                if not trusted:
                    raise ArtifactInvalid(
                        f"'{model_file.name}' is a pickled model, which runs code when loaded; "
                        "serve it only from a trusted store (--trust-store)."
                    )
                file.seek(0)
                booster = pickle.load(file)  # noqa: S301 - the operator trusts this store
            else:
                # one copy in memory, read straight into the buffer XGBoost parses
                data = bytearray(os.fstat(file.fileno()).st_size)
                file.seek(0)
                size = file.readinto(data)
        if pickled:
            if not isinstance(booster, xgb.Booster):
                booster = getattr(booster, "get_booster", lambda: None)()
            if booster is None:
                raise ArtifactInvalid(f"'{model_file.name}' does not hold an XGBoost model.")
        else:
            if size < 2:  # XGBoost aborts the whole process on an empty buffer
                raise ArtifactInvalid(f"'{model_file.name}' is not a valid XGBoost model: it is empty.")
            try:
                check_xgboost_model(data)
            except StructureError as exc:
                raise ArtifactInvalid(f"'{model_file.name}' is not a valid XGBoost model: {exc}") from exc
            booster = xgb.Booster()
            try:
                booster.load_model(data)
            except xgb.core.XGBoostError as exc:
                raise ArtifactInvalid(f"'{model_file.name}' is not a valid XGBoost model: {_reason(exc)}") from exc
            finally:
                del data
        booster.set_param({"nthread": 1})
        return XGBoostModel(booster)


def _reason(exc: BaseException) -> str:
    """XGBoost's message without its ``[12:00:00] /workspace/src/file.cc:123:`` prefix."""
    line = (str(exc).splitlines() or [""])[0]
    return _LOCATION.sub("", line).strip() or type(exc).__name__

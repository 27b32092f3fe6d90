"""Shared test models: a tiny real XGBoost model and dummy models with knobs.

The dummy handler loads ``dummy.json`` artifacts: ``{"size": bytes, "delay": seconds,
"fail": "message", "value": number}``; its model answers ``value`` for every row
(or the row's sum when ``value`` is null), so tests control size, load time and
failures exactly.
"""

from __future__ import annotations

import functools
import json
import tarfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import sizing
from modelyard.demo import make_artifact
from modelyard.errors import ArtifactInvalid
from modelyard.handlers import HANDLERS, Handler, Loader, Model

ROW = b"1994,3188,5,1.5,1.62,3"


def made(folder: Path) -> Path:
    """``folder``, created (a local store must exist before it is opened)."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@functools.cache
def booster_bytes(seed: int = 0, fmt: str = "ubj") -> bytes:
    """A small trained XGBoost regressor over 6 features, serialised as ``fmt``."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 5000, size=(300, 6)).astype(np.float32)
    y = x[:, 1] * (100 + seed) + x[:, 0]
    booster = xgb.train({"max_depth": 3, "nthread": 1, "seed": seed}, xgb.DMatrix(x, label=y), num_boost_round=10)
    return bytes(booster.save_raw(fmt))


@functools.cache
def digits_booster_bytes() -> bytes:
    """An XGBoost regressor over 6 single-digit features: 500,000 such rows make a 6 MB CSV body."""
    import xgboost as xgb

    rng = np.random.default_rng(7)
    x = rng.integers(0, 10, size=(2000, 6)).astype(np.float32)
    y = x @ np.array([1.5, -2.0, 0.25, 3.0, 0.5, -1.0]) + x[:, 0] * x[:, 1]
    booster = xgb.train({"max_depth": 4, "nthread": 1, "seed": 7}, xgb.DMatrix(x, label=y), num_boost_round=20)
    return bytes(booster.save_raw("ubj"))


def xgb_predict(model: bytes, rows: np.ndarray) -> np.ndarray:
    """What XGBoost itself predicts for ``rows`` with the serialised ``model``."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(model))
    return np.asarray(booster.inplace_predict(rows.astype(np.float32)))


def xgb_artifact(seed: int = 0) -> bytes:
    """A SageMaker-style model.tar.gz with ``xgboost-model`` inside."""
    return make_artifact({"xgboost-model": booster_bytes(seed)})


def dummy_artifact(size: int = 1000, delay: float = 0.0, fail: str | None = None, value: float | None = 1.0) -> bytes:
    """A dummy.json artifact (see module doc)."""
    return json.dumps({"size": size, "delay": delay, "fail": fail, "value": value}).encode()


class DummyModel(Model):
    handler = "dummy"

    def __init__(self, size: int, value: float | None, name: str = "", unloads: list[str] | None = None) -> None:
        self.size = size
        self.value = value
        self.name = name
        self.unloaded = False
        self._unloads = unloads

    def predict(self, data: Any) -> Any:
        rows = np.asarray(data)
        if self.value is None:
            return rows.sum(axis=1)
        return np.full(rows.shape[0], self.value, dtype=np.float32)

    def unload(self) -> None:
        self.unloaded = True
        if self._unloads is not None:
            self._unloads.append(self.name)


class DummyHandler(Handler):
    name = "dummy"

    def __init__(self) -> None:
        self.loads = 0
        self.lock = threading.Lock()
        self.models: list[DummyModel] = []
        self.unloads: list[str] = []  # artifact file names, in the order their models were unloaded

    def find(self, root: Path) -> Path | None:
        found = sorted(root.rglob("*.json"))
        return found[0] if found and found[0].name.endswith("dummy.json") else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        spec = json.loads(model_file.read_text())
        with self.lock:
            self.loads += 1
        if spec.get("delay"):
            time.sleep(spec["delay"])
        if spec.get("fail"):
            raise ArtifactInvalid(spec["fail"])
        model = DummyModel(int(spec["size"]), spec.get("value"), model_file.name, self.unloads)
        self.models.append(model)
        return model


def dummy_loader(handler: DummyHandler) -> Loader:
    """A loader knowing the dummy handler besides the real ones."""
    loader = Loader(handlers={**HANDLERS, "dummy": handler})
    loader._warm.add("dummy")  # dummy models have no framework set-up: count every load
    return loader


def dummy_measure(fn: Any) -> tuple[Model, int]:
    """Size measurement for dummy models: their declared size."""
    model = fn()
    return model, int(getattr(model, "size", 1000))


def windowed_measure(fn: Any) -> tuple[Model, int]:
    """:func:`dummy_measure` inside a real measuring window (one at a time, no unload meanwhile)."""
    with sizing.measuring():
        return dummy_measure(fn)


# -- one small real model per framework (LightGBM, scikit-learn, ONNX, inference.py) --

FEATURES = 6


def training_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 rows of 6 house-like features (float64, as frameworks are trained) and a price."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 5000, size=(300, FEATURES))
    return x, x[:, 1] * (100 + seed) + x[:, 0] + rng.normal(0, 10, 300)


def sample_rows(n: int = 3, seed: int = 99) -> np.ndarray:
    """Rows to predict on, rounded to what a CSV body carries exactly."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0, 5000, size=(n, FEATURES)), 2)


def csv_body(rows: np.ndarray) -> bytes:
    """``rows`` as a text/csv body that parses back to exactly the same float64 values."""
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()


@functools.cache
def lightgbm_text(seed: int = 0, classes: int = 1) -> bytes:
    """A small LightGBM booster in its text format (a regressor, or a classifier of ``classes``)."""
    import lightgbm as lgb

    x, y = training_data(seed)
    params: dict[str, Any] = {"verbose": -1, "num_threads": 1, "num_leaves": 7, "seed": seed}
    if classes > 1:
        params.update(objective="multiclass", num_class=classes)
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=10)
    return str(booster.model_to_string()).encode()


def lightgbm_predict(model: bytes, rows: np.ndarray, **kwargs: Any) -> np.ndarray:
    """What LightGBM itself predicts for ``rows`` with the text ``model``."""
    import lightgbm as lgb

    return np.asarray(lgb.Booster(model_str=model.decode()).predict(rows, **kwargs))


@functools.cache
def sklearn_model(seed: int = 0, kind: str = "regressor") -> Any:
    """A fitted estimator: a random forest regressor, or a scaler + logistic regression
    pipeline classifying rows as ``"cheap"``/``"dear"`` (string labels)."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = training_data(seed)
    if kind == "regressor":
        return RandomForestRegressor(n_estimators=5, max_depth=4, random_state=seed).fit(x, y)
    labels = np.where(y > np.median(y), "dear", "cheap")
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, labels)


def joblib_bytes(estimator: Any) -> bytes:
    """``estimator`` as joblib writes it."""
    import io

    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    return buffer.getvalue()


@functools.cache
def onnx_bytes(seed: int = 0, kind: str = "regressor") -> bytes:
    """A scikit-learn model converted by skl2onnx: a linear regressor (input ``X``, float32 [?, 6]),
    or a logistic regression classifier with a ZipMap probability output."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = training_data(seed)
    x32 = x.astype(np.float32)
    if kind == "regressor":
        fitted: Any = LinearRegression().fit(x32, y)
    else:
        fitted = LogisticRegression(max_iter=1000).fit(x32, (y > np.median(y)).astype(np.int64))
    return bytes(to_onnx(fitted, x32[:1], target_opset=17).SerializeToString())


def onnx_predict(model: bytes, feed: dict[str, np.ndarray], output: str | None = None) -> Any:
    """What ONNX Runtime itself answers for ``feed`` (the first output unless named)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = output or session.get_outputs()[0].name
    return session.run([name], feed)[0]


INFERENCE_PY = b"""
import json
import os

import numpy as np


def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.json")) as f:
        return np.array(json.load(f)["weights"])


def input_fn(body, content_type):
    if content_type != "text/csv":
        raise ValueError(f"unsupported content type {content_type}")
    return np.array([[float(v) for v in line.split(",")] for line in body.decode().splitlines() if line])


def predict_fn(data, model):
    if data.shape[1] != model.shape[0]:
        raise ValueError(f"expected {model.shape[0]} features, got {data.shape[1]}")
    return data @ model


def output_fn(prediction, accept):
    return json.dumps({"prices": prediction.tolist()}), "application/json"
"""


def inference_weights(seed: int = 0) -> np.ndarray:
    """The weights of the ``inference.py`` test model: a linear price."""
    return np.array([1.0, 100.0 + seed, 2.0, 3.0, 0.5, 7.0])


def inference_artifact(seed: int = 0, source: bytes = INFERENCE_PY) -> bytes:
    """A model.tar.gz with ``code/inference.py`` and the ``weights.json`` its model_fn reads."""
    weights = json.dumps({"weights": inference_weights(seed).tolist()}).encode()
    return make_artifact({"code/inference.py": source, "weights.json": weights})


@functools.cache
def onnx_graph(kind: str = "two_inputs") -> bytes:
    """Hand-built ONNX graphs: ``two_inputs`` (a, b float32 [?, 3] → sum = a + b, product = a * b)
    or ``text`` (a string tensor ``text`` [?] echoed as ``same``)."""
    from onnx import TensorProto, helper

    if kind == "two_inputs":
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in ("a", "b")]
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3]) for n in ("sum", "product")]
        nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])]
    else:
        inputs = [helper.make_tensor_value_info("text", TensorProto.STRING, [None])]
        outputs = [helper.make_tensor_value_info("same", TensorProto.STRING, [None])]
        nodes = [helper.make_node("Identity", ["text"], ["same"])]
    graph = helper.make_graph(nodes, kind, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


# -- decompression bombs ----------------------------------------------------------

_ZERO_BLOCK = 8 * 1024 * 1024


@functools.cache
def _deflated_zeros(size: int) -> bytes:
    """``size`` zero bytes as raw deflate blocks ending on a full flush (they can be repeated)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(bytes(size)) + compressor.flush(zlib.Z_FULL_FLUSH)


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def zero_bomb(members: tuple[tuple[str, int], ...]) -> bytes:
    """A valid ``.tar.gz`` of zero-filled files ``(name, size)``: a few MB that unpack to GBs.

    Each 8 MiB of zeros is compressed once and its deflate blocks repeated (a full
    flush makes them independent), so 2 GiB cost about a second to build, mostly the CRC.
    """
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    crc = total = 0
    zeros = bytes(_ZERO_BLOCK)

    def add_zeros(count: int) -> None:
        nonlocal crc
        full, rest = divmod(count, _ZERO_BLOCK)
        parts.extend([_deflated_zeros(_ZERO_BLOCK)] * full)
        for _ in range(full):
            crc = zlib.crc32(zeros, crc)
        if rest:
            parts.append(_deflated_zeros(rest))
            crc = zlib.crc32(zeros[:rest], crc)

    for name, size in members:
        info = tarfile.TarInfo(name)
        info.size = size
        header = info.tobuf(format=tarfile.GNU_FORMAT)
        parts.append(_deflated(header))
        crc = zlib.crc32(header, crc)
        add_zeros(size + (-size) % tarfile.BLOCKSIZE)
        total += len(header) + size + (-size) % tarfile.BLOCKSIZE
    add_zeros(2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
    total += 2 * tarfile.BLOCKSIZE
    parts.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))  # the final (empty) block
    parts.append(crc.to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(parts)


# -- MLflow: a scikit-learn pipeline saved by mlflow.sklearn, with a signature --

HOUSE_COLUMNS = ("year", "sqft", "beds", "city")
CITIES = ("Austin", "Boston", "Chicago")


def quietly_import_mlflow() -> Any:
    """``mlflow.sklearn``, imported without MLflow's import-time warnings (the tests make warnings errors)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.pyfunc
        import mlflow.sklearn

    return mlflow


def house_frame(n: int = 60, seed: int = 0) -> Any:
    """Houses as a DataFrame: ``year`` and ``sqft`` doubles, ``beds`` a long, ``city`` a string."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "year": np.round(rng.uniform(1900, 2020, n), 1),
            "sqft": np.round(rng.uniform(500, 5000, n), 1),
            "beds": rng.integers(1, 6, n).astype(np.int64),
            "city": rng.choice(CITIES, n),
        }
    )


def save_mlflow_model(path: Path, seed: int = 0, serialization_format: str = "skops") -> Any:
    """Train a pipeline (one-hot city, ridge regression) on a DataFrame and save it with
    ``mlflow.sklearn.save_model``, with the signature MLflow infers from the frame; return it."""
    import warnings

    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    mlflow = quietly_import_mlflow()
    frame = house_frame(seed=seed)
    price = (
        frame["sqft"] * (100 + seed)
        + frame["beds"] * 5000
        + frame["city"].map({"Austin": 0, "Boston": 9e4}).fillna(3e4)
    )
    encode = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["city"]), remainder="passthrough")
    pipeline = make_pipeline(encode, Ridge()).fit(frame, price)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hints about integer columns and pickles
        signature = mlflow.models.infer_signature(frame, pipeline.predict(frame))
        mlflow.sklearn.save_model(
            pipeline,
            str(path),
            signature=signature,
            serialization_format=serialization_format,
            pip_requirements=["scikit-learn", "skops"],  # inferring them runs a subprocess: seconds
        )
    return pipeline

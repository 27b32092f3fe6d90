"""Shared test models: a tiny real XGBoost model and dummy models with knobs.

The dummy handler loads ``dummy.json`` artifacts: ``{"size": bytes, "delay": seconds,
"fail": "message", "value": number}``; its model answers ``value`` for every row
(or the row's sum when ``value`` is null), so tests control size, load time and
failures exactly.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.demo import make_artifact
from modelyard.errors import ArtifactInvalid
from modelyard.handlers import HANDLERS, Handler, Loader, Model

ROW = b"1994,3188,5,1.5,1.62,3"


@functools.cache
def booster_bytes(seed: int = 0, fmt: str = "ubj") -> bytes:
    """A small trained XGBoost regressor over 6 features, serialised as ``fmt``."""
    import xgboost as xgb

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 5000, size=(300, 6)).astype(np.float32)
    y = x[:, 1] * (100 + seed) + x[:, 0]
    booster = xgb.train({"max_depth": 3, "nthread": 1, "seed": seed}, xgb.DMatrix(x, label=y), num_boost_round=10)
    return bytes(booster.save_raw(fmt))


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

    def __init__(self, size: int, value: float | None) -> None:
        self.size = size
        self.value = value
        self.unloaded = False

    def predict(self, data: Any) -> Any:
        rows = np.asarray(data)
        if self.value is None:
            return rows.sum(axis=1)
        return np.full(rows.shape[0], self.value, dtype=np.float32)

    def unload(self) -> None:
        self.unloaded = True


class DummyHandler(Handler):
    name = "dummy"

    def __init__(self) -> None:
        self.loads = 0
        self.lock = threading.Lock()
        self.models: list[DummyModel] = []

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
        model = DummyModel(int(spec["size"]), spec.get("value"))
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

"""The XGBoost fast path keeps one proxy DMatrix per thread: check it under concurrency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from modelyard.handlers import Loader
from modelyard.handlers.xgboost import XGBoostModel
from tests.fixtures import booster_bytes


def test_concurrent_predictions_on_many_threads_match_xgboost(tmp_path: Path) -> None:
    (tmp_path / "xgboost-model").write_bytes(booster_bytes(5))
    model = Loader().load(tmp_path)
    assert isinstance(model, XGBoostModel)
    assert model._fast is not None
    rng = np.random.default_rng(7)
    batches = [rng.uniform(0, 5000, size=(int(rng.integers(1, 300)), 6)).astype(np.float32) for _ in range(64)]
    expected = [model.booster.inplace_predict(batch) for batch in batches]
    barrier = threading.Barrier(8)

    def run(index: int) -> bool:
        if index < 8:
            barrier.wait()
        return all(
            np.array_equal(model.predict(batches[(index + k) % 64]), expected[(index + k) % 64]) for k in range(20)
        )

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(run, range(64)))

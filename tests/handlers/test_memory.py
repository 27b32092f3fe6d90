"""Model sizes are measured honestly for every framework, Python objects included."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.handlers import HANDLERS, Loader
from modelyard.handlers.memory import small_python_objects
from modelyard.sizing import measure
from tests.fixtures import joblib_bytes

ROOT = Path(__file__).resolve().parents[2]


class Vocabulary:
    """An estimator made of small Python objects: a dict of 20,000 short strings."""

    def __init__(self, size: int) -> None:
        self.weights = {f"token-{i}": float(i) for i in range(size)}

    def predict(self, rows: Any) -> Any:
        return np.full(len(rows), len(self.weights), dtype=np.float64)


def test_small_python_objects_are_counted() -> None:
    table, small = small_python_objects(lambda: [f"value-{i}" for i in range(10_000)])
    assert len(table) == 10_000
    assert 10_000 * 48 <= small <= 10_000 * 80  # a short str is ~60 bytes; the list itself is malloc'd
    assert not tracemalloc.is_tracing()


def test_sklearn_model_of_python_objects_is_not_measured_as_nearly_free(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(joblib_bytes(Vocabulary(20_000)))
    loader = Loader(trusted=True)
    loader.load_measured(tmp_path, measure)
    model, size = loader.load_measured(tmp_path, measure)
    tracemalloc.start()  # a second copy, traced: every Python allocation it leaves
    try:
        copy = loader.load(tmp_path)
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert copy.predict(np.zeros((1, 1))).tolist() == [20_000.0]
    assert model.predict(np.zeros((1, 1))).tolist() == [20_000.0]
    assert size >= 0.9 * traced, (size, traced)


@pytest.mark.parametrize("framework", ["lightgbm", "sklearn", "onnx", "python", "mlflow"])
def test_measured_sizes_match_resident_growth(tmp_path: Path, framework: str) -> None:
    """40 models in a fresh interpreter: the resident set grows by what was measured (±50%)."""
    from tests.handlers.memory_probe import write

    write(tmp_path / "model", framework, 0)
    probe = subprocess.run(
        [sys.executable, "-m", "tests.handlers.memory_probe", framework, "40", str(tmp_path / "model")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout.splitlines()[-1])
    ratio = result["rss"] / result["measured"]
    assert 0.67 <= ratio <= 1.5, (framework, result)


def test_handlers_made_of_python_objects_say_so() -> None:
    assert {name for name, h in HANDLERS.items() if h.python_objects} == {"lightgbm", "sklearn", "python", "mlflow"}

"""Run in a fresh interpreter by test_memory: load one model of a framework N times (N
independent models), measured as the cache measures them, and print the sum of measured
sizes and the growth of the resident set.

``python -m tests.handlers.memory_probe FRAMEWORK N DIR`` prints ``{"measured": .., "rss": ..}``.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import numpy as np

from modelyard.handlers import Loader, Model
from modelyard.sizing import measure, rss_bytes
from tests.fixtures import joblib_bytes, onnx_bytes, training_data

PYTHON_MODEL = """
def model_fn(model_dir):
    return {f"feature-{i}": float(i) for i in range(5000)}  # small Python objects only

def predict_fn(data, model):
    return data.sum(axis=1)
"""


def write(root: Path, framework: str, seed: int) -> Path:
    root.mkdir(parents=True)
    if framework == "lightgbm":
        import lightgbm as lgb

        x, y = training_data(seed)
        params = {"verbose": -1, "num_threads": 1, "num_leaves": 31, "min_data_in_leaf": 2, "seed": seed}
        lgb.train(params, lgb.Dataset(x, y), num_boost_round=20).save_model(str(root / "model.txt"))
    elif framework == "mlflow":
        from tests.fixtures import save_mlflow_model

        root.rmdir()  # MLflow writes the folder itself
        save_mlflow_model(root, seed)
    elif framework == "onnx":
        (root / "model.onnx").write_bytes(onnx_bytes(seed))
    elif framework == "sklearn":
        from sklearn.ensemble import GradientBoostingRegressor

        x, y = training_data(seed)  # 100 stumps: mostly Python objects around tiny arrays
        estimator = GradientBoostingRegressor(n_estimators=100, max_depth=1, random_state=seed).fit(x, y)
        (root / "model.joblib").write_bytes(joblib_bytes(estimator))
    else:
        (root / "inference.py").write_text(PYTHON_MODEL)
    return root


def main() -> None:
    count, root = int(sys.argv[2]), Path(sys.argv[3])  # argv[1] names the framework, for ps
    # the model is written beforehand by the caller: training here would leave freed
    # heap behind that the loads reuse, and the resident set would not grow by them
    loader = Loader(trusted=True)
    loader.load_measured(root, measure)  # the framework's own set-up is not a model's
    gc.collect()
    before = rss_bytes()
    models: list[Model] = []
    measured = 0
    for _ in range(count):
        model, size = loader.load_measured(root, measure)
        models.append(model)
        measured += size
    gc.collect()
    if sys.argv[1] == "mlflow":  # typed by the model's signature
        assert all(m.invoke(b"1990,1200,3,Austin", "text/csv", "text/csv") for m in models)
    else:
        rows = np.zeros((1, 6))
        assert all(m.predict(rows) is not None for m in models)
    print(json.dumps({"measured": measured, "rss": rss_bytes() - before}))


if __name__ == "__main__":
    main()

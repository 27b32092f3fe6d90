"""LightGBM boosters saved as text (``Booster.save_model``).

The model file is a ``*.txt`` file whose first line is ``tree``, LightGBM's text
format (so a README or a requirements file is never taken for a model); when an
artifact holds several, the one named ``model.txt``. The text format runs no code:
it needs no trusted store.

LightGBM trusts the text it parses: a tree whose length differs from its
``tree_sizes`` entry (a hand edit, Windows line endings) aborts the process, a child
index outside its tree is read out of bounds. So the text is checked first
(:mod:`~modelyard.handlers.lightgbm_checks`) and handed over without ``tree_sizes``:
trees are then parsed one after the other and a format error raises instead of
aborting. Models with Windows line endings load.

Rows are decoded as ``float64``, what LightGBM is trained on, so that a threshold
falling between a value and its ``float32`` rounding splits as it did in training.
Each prediction runs on one thread: many models share the cores. Outputs:
``predict`` (probabilities for classifiers, values for regressors) and
``raw_score`` (margins before the link function).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers.base import Handler, Model, TensorSpec, require
from modelyard.handlers.lightgbm_checks import prepare_model_text
from modelyard.handlers.structure import StructureError

__all__ = ["LightGBMHandler", "LightGBMModel"]

_MODEL_NAME = "model.txt"
_HEADER = b"tree"


def _looks_like_lightgbm(path: Path) -> bool:
    with path.open("rb") as f:
        return f.readline().strip() == _HEADER


class LightGBMModel(Model):
    """A loaded LightGBM Booster, predicting on one thread."""

    handler = "lightgbm"
    dtype = np.float64
    outputs = ("predict", "raw_score")

    def __init__(self, booster: Any, error: type[Exception]) -> None:
        self.booster = booster
        self.num_features = int(booster.num_feature()) or None
        self._error = error
        self._classes = int(booster.num_model_per_iteration())

    def _predict(self, data: Any, raw_score: bool) -> Any:
        rows = np.ascontiguousarray(data, dtype=np.float64)
        try:
            return self.booster.predict(rows, raw_score=raw_score, num_threads=1)
        except self._error as exc:  # LightGBM refused the input
            raise ModelError(f"LightGBM could not predict: {str(exc).splitlines()[0]}") from exc

    def predict(self, data: Any) -> Any:
        return self._predict(data, raw_score=False)

    def predict_output(self, data: Any, output: str) -> Any:
        if output == "raw_score":
            return self._predict(data, raw_score=True)
        return super().predict_output(data, output)

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        shape = (-1,) if self._classes == 1 else (-1, self._classes)
        inputs = [TensorSpec("input-0", np.dtype(np.float64), (-1, self.num_features or -1))]
        return inputs, [TensorSpec(name, np.dtype(np.float64), shape) for name in self.outputs]

    def unload(self) -> None:
        self.booster = None


class LightGBMHandler(Handler):
    """Loads LightGBM text models (see module doc)."""

    name = "lightgbm"
    module = "lightgbm"
    python_objects = True  # the Booster's Python side is a third of a small model

    def find(self, root: Path) -> Path | None:
        candidates = [p for p in sorted(root.rglob("*.txt")) if p.is_file() and _looks_like_lightgbm(p)]
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.name == _MODEL_NAME]
        return candidates[0] if len(candidates) == 1 else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        lgb = require("lightgbm", "lightgbm")
        try:
            text = prepare_model_text(model_file.read_bytes())
        except StructureError as exc:
            raise ArtifactInvalid(f"'{model_file.name}' is not a valid LightGBM model: {exc}") from exc
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ArtifactInvalid(
                f"'{model_file.name}' is not a valid LightGBM model: {str(exc).splitlines()[0]}"
            ) from exc
        return LightGBMModel(booster, lgb.basic.LightGBMError)

"""scikit-learn estimators and pipelines saved with joblib or pickle.

The model file is a single ``*.joblib``, ``*.pkl`` or ``*.pickle`` file; when an
artifact holds several, the one named ``model.joblib`` (or ``model.pkl``). Both
formats are pickles, which run code when loaded: they load only from a trusted
store (``--trust-store``). Any object with a ``predict`` method is served, an
estimator or a pipeline alike.

Outputs: ``predict``, and ``predict_proba``, ``predict_log_proba`` and
``decision_function`` when the estimator has them (a request picks one with
``output=predict_proba``). Rows are decoded as ``float64``, what estimators are
fitted on; a V2 tensor keeps its numeric type (scikit-learn computes float32 in
float32). Every ``n_jobs`` parameter is set to 1 at load, since many models share
the cores and a one-row prediction gains nothing from worker threads. Each model
predicts once on zeros as it loads, so what a first prediction leaves allocated is
measured with it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import codecs
from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers.base import Handler, Model, TensorSpec, require

__all__ = ["SklearnHandler", "SklearnModel"]

log = logging.getLogger("modelyard.handlers")

_NAMES = ("model.joblib", "model.pkl", "model.pickle")
_SUFFIXES = (".joblib", ".pkl", ".pickle")
_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0]


def _one_thread(estimator: Any) -> None:
    try:
        params = estimator.get_params(deep=True)
        single = {key: 1 for key, value in params.items() if key.rsplit("__", 1)[-1] == "n_jobs" and value != 1}
        if single:
            estimator.set_params(**single)
    except Exception as exc:  # noqa: BLE001 - a custom estimator may not support it; it still predicts
        log.debug("could not set n_jobs=1 on %s: %s", type(estimator).__name__, exc)


class SklearnModel(Model):
    """A loaded estimator or pipeline (see module doc)."""

    handler = "sklearn"
    dtype = np.float64

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        features = getattr(estimator, "n_features_in_", None)
        self.num_features = int(features) if isinstance(features, int | np.integer) else None
        self.outputs = tuple(m for m in _METHODS if callable(getattr(estimator, m, None)))

    def predict(self, data: Any) -> Any:
        return self.predict_output(data, "predict")

    def predict_output(self, data: Any, output: str) -> Any:
        if output not in self.outputs:
            return super().predict_output(data, output)
        try:
            return getattr(self.estimator, output)(data)
        except (ValueError, TypeError) as exc:  # scikit-learn's way of refusing input
            raise ModelError(f"scikit-learn could not {output}: {exc}") from exc

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, Any]:
        """Tensors keep their numeric dtype: scikit-learn computes a float32 input in float32."""
        if len(inputs) == 1 and (tensor := next(iter(inputs.values()))).dtype.kind in "fiu":
            name = next(iter(inputs))
            rows = codecs.as_rows(tensor, self.num_features, tensor.dtype, f"Input '{name}'")
            return {output: self.predict_output(rows, output) for output in (outputs or self.outputs[:1])}
        return super().infer(inputs, outputs)

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        classes = getattr(self.estimator, "classes_", None)
        label = np.asarray(classes).dtype if classes is not None else np.dtype(np.float64)
        if label.kind == "O":
            label = np.dtype(str)
        width = len(classes) if classes is not None and np.ndim(classes) == 1 else -1
        inputs = [TensorSpec("input-0", np.dtype(np.float64), (-1, self.num_features or -1))]
        outputs = [
            TensorSpec(name, label, (-1,)) if name == "predict" else TensorSpec(name, np.dtype(np.float64), (-1, width))
            for name in self.outputs
        ]
        return inputs, outputs

    def warm_up(self) -> None:
        """Predict once on zeros, so what a first prediction leaves behind is measured with the model."""
        if self.num_features is None:
            return
        try:
            self.estimator.predict(np.zeros((1, self.num_features)))
        except Exception as exc:  # noqa: BLE001 - a model may refuse zeros; its first request will tell
            log.debug("warm-up prediction failed: %s", exc)

    def unload(self) -> None:
        self.estimator = None


class SklearnHandler(Handler):
    """Loads joblib and pickle files from a trusted store (see module doc)."""

    name = "sklearn"
    module = "sklearn"
    python_objects = True  # an estimator is a graph of Python objects around its arrays

    def find(self, root: Path) -> Path | None:
        candidates = [p for p in sorted(root.rglob("*")) if p.suffix in _SUFFIXES and p.is_file()]
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.name in _NAMES][:1]
        return candidates[0] if len(candidates) == 1 else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        if not trusted:
            raise ArtifactInvalid(
                f"'{model_file.name}' is a pickle ({model_file.suffix}), which runs code when loaded: it is "
                "served only from a trusted store. Start the server with --trust-store "
                "(or trust_store = true, MODELYARD_TRUST_STORE=1) if you trust everyone who can write to it."
            )
        require("sklearn", "sklearn")
        joblib = require("joblib", "sklearn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # e.g. InconsistentVersionWarning: logged, not raised
            try:
                estimator = joblib.load(model_file)
            except Exception as exc:  # unpickling fails in many ways: a missing module, a corrupt file...
                raise ArtifactInvalid(
                    f"'{model_file.name}' could not be unpickled: {type(exc).__name__}: {_first_line(exc)}"
                ) from exc
        for warning in caught:
            log.warning("loading %s: %s", model_file.name, warning.message)
        if not callable(getattr(estimator, "predict", None)):
            raise ArtifactInvalid(
                f"'{model_file.name}' holds a {type(estimator).__name__}, not an estimator with a predict method."
            )
        _one_thread(estimator)
        model = SklearnModel(estimator)
        model.warm_up()
        return model

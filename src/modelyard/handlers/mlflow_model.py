"""A loaded MLflow model: requests typed by its signature, MLflow's answers, V2 tensors.

The model's signature (the ``signature`` of its ``MLmodel``) types the input: with
columns, every payload becomes a DataFrame with the signature's names and dtypes
(:mod:`modelyard.handlers.mlflow_schema`); with tensors, an array of the tensor's
dtype; without a signature, rows of ``float64`` numbers. Requests may be CSV (a
first row of column names is a header, else values come in the signature's order),
MLflow's own JSON (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``, with ``params``) read by MLflow's own parser, or the SageMaker shapes
every handler reads. JSON answers take the MLflow scoring server's shape,
``{"predictions": [...]}``, which is also the answer when Accept is absent.

Predictions run on a worker thread: a pyfunc model may be any Python code.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from modelyard import codecs
from modelyard.errors import ModelError, ModelyardError
from modelyard.handlers.base import Model, TensorSpec, require
from modelyard.handlers.mlflow_schema import (
    Column,
    frame_from_array,
    frame_from_csv,
    frame_from_named,
    frame_from_records,
    frame_from_rows,
    tensor_specs,
)

__all__ = ["MLflowInput", "MLflowModel", "first_line", "forget_code", "quiet_import"]

log = logging.getLogger("modelyard.handlers")

_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_ROW_FIELDS = ("features", "values")


def first_line(text: str) -> str:
    """The first line of an error message."""
    return (text.strip().splitlines() or [""])[0]


def quiet_import(name: str) -> ModuleType:
    """An MLflow module, imported quietly: MLflow warns about its own internals as it imports."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        require("pandas", "mlflow")
        return require(name, "mlflow")


class MLflowInput(NamedTuple):
    """A decoded request: the model's input and MLflow's inference ``params``."""

    data: Any
    params: dict[str, Any] | None = None


def _column(spec: Any) -> Column:
    """A ColSpec as a :class:`Column`; MLflow's complex types (arrays, objects, maps, any) pass as they come."""
    types = quiet_import("mlflow.types")
    if not isinstance(spec.type, types.DataType):
        return Column(spec.name, "object", np.dtype(object), bool(getattr(spec, "required", True)))
    name = spec.type.name
    dtype = np.dtype(object) if name in ("string", "binary") else np.dtype(spec.type.to_numpy())
    return Column(spec.name, name, dtype, bool(getattr(spec, "required", True)))


def _spec(name: str, spec: Any) -> TensorSpec:
    """An MLflow TensorSpec or ColSpec as a V2 tensor (text and dates travel as ``BYTES``)."""
    if isinstance(spec.type, np.dtype):
        shape = tuple(int(d) for d in (spec.shape or (-1,)))
        return TensorSpec(spec.name or name, spec.type, shape)
    column = _column(spec)
    dtype = column.dtype if column.dtype.kind in "biuf" else np.dtype(object)
    return TensorSpec(spec.name or name, dtype, (-1,))


def _pick(predictions: Any, output: str) -> Any:
    """One named column (or key) of the predictions."""
    try:
        return predictions[output]
    except (KeyError, IndexError, TypeError, ValueError):
        raise ModelError(f"The model's predictions have no column '{output}'.", original_status=500) from None


def _as_array(predictions: Any, media: str) -> np.ndarray:
    """Predictions of any pyfunc shape (DataFrame, Series, list, dict) as an array for CSV and .npy."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(predictions, dict):
        try:
            predictions = pd.DataFrame(predictions)
        except ValueError as exc:
            raise ModelError(
                f"The model's predictions cannot be written as {media} ({exc}); ask for application/json.",
                original_status=406,
            ) from None
    if pd is not None and isinstance(predictions, pd.DataFrame):
        values: np.ndarray = predictions.to_numpy()
        return values.reshape(-1) if values.ndim == 2 and values.shape[1] == 1 else values
    if pd is not None and isinstance(predictions, pd.Series):
        series: np.ndarray = predictions.to_numpy()
        return series
    try:
        return np.asarray(predictions)
    except ValueError as exc:  # ragged lists
        raise ModelError(
            f"The model's predictions cannot be written as {media} ({exc}); ask for application/json.",
            original_status=406,
        ) from None


class MLflowModel(Model):
    """A loaded ``PyFuncModel`` and its signature (see module doc)."""

    handler = "mlflow"
    dtype = np.float64
    threaded = True  # a pyfunc model may be any Python code

    def __init__(self, pyfunc_model: Any, folder: Path, code_paths: Sequence[str] = ()) -> None:
        self.pyfunc = pyfunc_model
        self.folder = folder
        self._code_paths = list(code_paths)
        self._errors = quiet_import("mlflow.exceptions").MlflowException
        self._server = quiet_import("mlflow.pyfunc.scoring_server")
        meta = pyfunc_model.metadata
        self.schema = meta.get_input_schema()
        tensor = self.schema is not None and self.schema.is_tensor_spec()
        self.columns = [_column(s) for s in self.schema.inputs] if self.schema is not None and not tensor else None
        self.tensors = [_spec(f"input-{i}", s) for i, s in enumerate(self.schema.inputs)] if tensor else None
        if self.columns is not None:
            self.num_features = len(self.columns)
        # a signature from the predict function's type hints: MLflow serves "inputs" as it comes
        self._type_hints = bool(getattr(meta, "_is_signature_from_type_hint", lambda: False)())
        output = meta.get_output_schema()
        self._output = list(output.inputs) if output is not None else []
        named = [s.name for s in self._output if not output.is_tensor_spec() and s.name] if output else []
        self.outputs = ("predict", *named)

    # -- requests --------------------------------------------------------------------

    def decode(self, body: bytes, content_type: str) -> MLflowInput:
        media = codecs.content_type(content_type)
        if media == "application/json":
            return self._from_json(_json(body), body)
        if media == "application/jsonlines":
            lines = [line for line in body.splitlines() if line.strip()]
            if len(lines) == 1:
                return self._from_json(_json(lines[0]), body)
            return self._from_json([_json(line, n) for n, line in enumerate(lines, 1)], b"[" + b",".join(lines) + b"]")
        if media == "text/csv" and self.columns is not None:
            return MLflowInput(frame_from_csv(body, self.columns))
        if media == "application/x-npy":
            return MLflowInput(self._from_array(codecs.load_npy(body), "The .npy array"))
        return MLflowInput(self._from_array(codecs.decode(body, media, self.num_features, np.float64), "The input"))

    def _from_json(self, doc: Any, body: bytes) -> MLflowInput:
        params = doc.get("params") if isinstance(doc, dict) else None
        if params is not None and not isinstance(params, dict):
            raise ModelError(f'"params" must be an object of parameter values, not {type(params).__name__}.')
        keys = [key for key in _MLFLOW_KEYS if isinstance(doc, dict) and key in doc]
        if len(keys) > 1:
            raise ModelError(f"The body has {' and '.join(keys)}: give one of them.")
        if keys:
            value = doc[keys[0]]
            if keys[0] == "inputs" and self._type_hints and not _positional(value):
                return MLflowInput(value, params)
            if keys[0] in ("instances", "inputs") and self.columns is not None and _positional(value):
                return MLflowInput(self._from_values(value), params)
            return MLflowInput(self._parse_mlflow({keys[0]: value}), params)
        if self.columns is None:  # SageMaker's shapes, read as every handler reads them
            return MLflowInput(self._from_array(codecs.decode(body, "application/json", None, np.float64), "The input"))
        for key in ("features", "data"):
            if isinstance(doc, dict) and key in doc:
                return MLflowInput(self._from_values(doc[key]), params)
        if isinstance(doc, list):
            return MLflowInput(self._from_values(doc))
        shapes = ", ".join(_MLFLOW_KEYS)
        raise ModelError(f"JSON body must be a list of rows or an object with one of {shapes}.")

    def _parse_mlflow(self, doc: dict[str, Any]) -> Any:
        try:
            return self._server.infer_and_parse_data(doc, self.schema)
        except self._errors as exc:
            raise ModelError(f"MLflow could not read the input: {first_line(exc.message)}") from exc
        except Exception as exc:  # MLflow's parser fails in many ways on malformed input
            key = next(iter(doc))
            raise ModelError(f"The body's {key} is malformed: {type(exc).__name__}: {exc}") from exc

    def _from_values(self, value: Any) -> Any:
        """SageMaker's JSON rows for a column signature: rows, one row, records, or ``{"features": [...]}``."""
        assert self.columns is not None
        if not isinstance(value, list) or not value:
            raise ModelError("The JSON body has no rows: give a list of rows or records.")
        if all(isinstance(v, dict) for v in value):
            if all(any(f in v for f in _ROW_FIELDS) for v in value):
                return frame_from_rows([v.get("features", v.get("values")) for v in value], self.columns)
            if self.columns[0].name is None:
                raise ModelError("The model's signature names no columns: send rows, not records.")
            return frame_from_records(value, self.columns)
        if not any(isinstance(v, list | dict) for v in value):  # one row, or one value per row for one column
            rows = [[v] for v in value] if len(self.columns) == 1 else [value]
            return frame_from_rows(rows, self.columns)
        if all(isinstance(v, list) for v in value):
            return frame_from_rows(value, self.columns)
        raise ModelError("The JSON rows mix lists, records and values; give rows of one kind.")

    def _from_array(self, array: np.ndarray, what: str) -> Any:
        if self.columns is not None:
            return frame_from_array(array, self.columns, what)
        if self.tensors is not None:
            if len(self.tensors) != 1:
                names = ", ".join(spec.name for spec in self.tensors)
                raise ModelError(f'The model takes several tensors ({names}): send JSON {{"inputs": {{name: ...}}}}.')
            return self._tensor(self.tensors[0], array, what)
        if array.ndim > 2:
            return array
        import pandas as pd

        rows = codecs.as_rows(array, None, array.dtype if array.dtype.kind in "biuf" else np.float64, what)
        return pd.DataFrame(rows)

    def _tensor(self, spec: TensorSpec, array: np.ndarray, what: str) -> np.ndarray:
        try:
            array = array.astype(spec.dtype, copy=False)
        except (TypeError, ValueError):
            raise ModelError(f"{what} holds {array.dtype} values; the model takes {spec.dtype}.") from None
        inner = spec.shape[1:]
        if array.ndim == 2 and len(inner) > 1 and all(d > 0 for d in inner) and array.shape[1] == np.prod(inner):
            array = array.reshape(-1, *inner)  # CSV rows of a flattened tensor
        elif array.ndim == len(spec.shape) - 1:
            array = array.reshape(1, *array.shape)  # one example
        return array

    # -- predictions -----------------------------------------------------------------

    def predict(self, data: Any) -> Any:
        request = data if isinstance(data, MLflowInput) else MLflowInput(data)
        try:
            if request.params is not None:
                return self.pyfunc.predict(request.data, params=request.params)
            return self.pyfunc.predict(request.data)
        except ModelyardError:
            raise
        except self._errors as exc:  # schema enforcement: the input does not fit the signature
            raise ModelError(f"MLflow refused the input: {first_line(exc.message)}") from exc
        except (ValueError, TypeError) as exc:  # the flavour's way of refusing input
            raise ModelError(f"The model could not predict: {type(exc).__name__}: {first_line(str(exc))}") from exc

    def predict_output(self, data: Any, output: str) -> Any:
        if output == "predict":
            return self.predict(data)
        if output not in self.outputs:
            return super().predict_output(data, output)
        return _pick(self.predict(data), output)

    def encode(self, predictions: Any, accept: str) -> tuple[bytes, str]:
        media = codecs.accept_type(accept, "application/json")
        if media == "application/json":  # the MLflow scoring server's answer, by its own encoder
            out = io.StringIO()
            self._server.predictions_to_json(predictions, out)
            return out.getvalue().encode(), media
        return codecs.encode(_as_array(predictions, media), media)

    def invoke(
        self, body: bytes, content_type: str, accept: str, custom_attributes: str | None = None
    ) -> tuple[bytes, str]:
        codecs.accept_type(accept)
        request = self.decode(body, content_type)
        output = codecs.request_options(body, content_type, custom_attributes).get("output", "predict")
        return self.encode(self.predict_output(request, output), accept)

    # -- Open Inference Protocol -----------------------------------------------------

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        if self.columns is not None:
            inputs = tensor_specs(self.columns)
        elif self.tensors is not None:
            inputs = list(self.tensors)
        else:
            inputs = [TensorSpec("input-0", np.dtype(np.float64), (-1, -1))]
        specs = [_spec("predict", s) for s in self._output]
        if len(specs) == 1:
            first = TensorSpec("predict", specs[0].dtype, specs[0].shape)
        elif specs:
            dtypes = {s.dtype for s in specs}
            first = TensorSpec("predict", dtypes.pop() if len(dtypes) == 1 else np.dtype(object), (-1, len(specs)))
        else:
            first = TensorSpec("predict", np.dtype(np.float64), (-1,))
        return inputs, [first, *(s for s in specs if s.name in self.outputs[1:])]

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, Any]:
        """Tensors named after the signature's columns (or tensors), or one tensor of rows."""
        wanted = list(outputs) or [self.outputs[0]]
        unknown = [name for name in wanted if name not in self.outputs]
        if unknown:
            raise ModelError(f"The model has no output '{unknown[0]}'; it has {', '.join(self.outputs)}.")
        predictions = self.predict(MLflowInput(self._from_tensors(inputs)))
        return {
            name: _as_array(predictions if name == "predict" else _pick(predictions, name), "a V2 tensor")
            for name in wanted
        }

    def _from_tensors(self, inputs: Mapping[str, np.ndarray]) -> Any:
        if not inputs:
            raise ModelError("The request has no input tensors.")
        if self.columns is not None:
            names = {c.name for c in self.columns}
            if self.columns[0].name is not None and all(name in names for name in inputs):
                return frame_from_named(inputs, self.columns)
            if len(inputs) == 1:
                ((name, tensor),) = inputs.items()
                return frame_from_array(tensor, self.columns, f"Input '{name}'")
            expected = ", ".join(str(c.name) for c in self.columns)
            given = ", ".join(inputs)
            raise ModelError(f"The model takes columns {expected} (or one tensor of rows); the request has {given}.")
        if self.tensors is not None:
            if len(self.tensors) == 1 and len(inputs) == 1:
                ((name, tensor),) = inputs.items()
                return self._tensor(self.tensors[0], tensor, f"Input '{name}'")
            missing = [spec.name for spec in self.tensors if spec.name not in inputs]
            if missing:
                raise ModelError(
                    f"The model takes tensors {', '.join(s.name for s in self.tensors)}; "
                    f"the request lacks {', '.join(missing)}."
                )
            return {s.name: self._tensor(s, inputs[s.name], f"Input '{s.name}'") for s in self.tensors}
        if len(inputs) == 1:
            return next(iter(inputs.values()))
        return dict(inputs)

    # -- life cycle ------------------------------------------------------------------

    def warm_up(self) -> None:
        """Predict once on a row of zeros, so what a first prediction leaves behind is measured with the model."""
        if self.columns is None or any(c.type in ("object", "binary", "datetime") for c in self.columns):
            return
        zero = {"string": "", "boolean": False}
        try:
            row = [[zero.get(c.type, 0) for c in self.columns]]
            self.pyfunc.predict(frame_from_rows(row, self.columns))
        except Exception as exc:  # noqa: BLE001 - a model may refuse zeros; its first request will tell
            log.debug("warm-up prediction failed: %s", exc)

    def unload(self) -> None:
        """Drop the model, and the code folder and modules its load added to the interpreter.

        A new version of the artifact then imports its own code, not the old one's.
        """
        self.pyfunc = None
        forget_code(self._code_paths)


def _json(body: bytes, line: int | None = None) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        where = f"Line {line} is" if line is not None else "The body is"
        raise ModelError(f"{where} not valid JSON: {str(exc)[:200]}") from None


def _positional(value: Any) -> bool:
    """Rows by position (lists or scalars), which MLflow's own parser cannot match to named columns."""
    return isinstance(value, list) and bool(value) and not any(isinstance(v, dict) for v in value)


def forget_code(code_paths: Sequence[str]) -> None:
    """Take the model's code folders off ``sys.path`` and forget the modules imported from them."""
    for path in code_paths:
        while path in sys.path:
            sys.path.remove(path)
    prefixes = tuple(os.path.join(path, "") for path in code_paths)
    if not prefixes:
        return
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(prefixes):
            sys.modules.pop(name, None)

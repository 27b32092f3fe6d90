"""ONNX models, run by ONNX Runtime on the CPU.

The model file is a single ``*.onnx`` file; when an artifact holds several, the one
named ``model.onnx``. ONNX is a graph format that runs no Python code: it needs no
trusted store.

Input names, element types and shapes are read from the model. A model with one
input takes rows like every other handler (CSV, LIBSVM, JSON rows, or an ``.npy``
array of any rank matching the input); a model with several takes them by name,
``{"inputs": {"name": [...], ...}}`` in JSON or tensors on the Open Inference
Protocol route. The default output is the model's first; ``output=NAME`` picks
another. A ZipMap output (scikit-learn classifiers converted by skl2onnx: a list of
``{class: probability}``) is returned as a 2-D array, one column per class.

The model is loaded from its path, so external data (tensors kept in another file,
as models over 2 GB must) is read from the artifact's folder and only from there
(:mod:`~modelyard.handlers.onnx_checks`); loaded from bytes, ONNX Runtime would
resolve it against the server's working directory.

Sessions are built for many models in one process: one intra-op and one inter-op
thread, no spinning, and neither the CPU memory arena nor memory patterns, which
would keep per-session buffers alive (and uncounted) after each run. Each session
runs once on zeros when it loads, so lazy first-run allocations are measured with
the model instead of surprising the budget later; a run still going after
:data:`WARM_UP_LIMIT` seconds is stopped and the model refused.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelyard import codecs
from modelyard.errors import ArtifactInvalid, ModelError
from modelyard.handlers.base import Handler, Model, TensorSpec, require
from modelyard.handlers.onnx_checks import check_external_data
from modelyard.handlers.structure import StructureError

__all__ = ["ONNXHandler", "ONNXModel"]

log = logging.getLogger("modelyard.handlers")

_MODEL_NAME = "model.onnx"
#: seconds the first run on zeros may take; a graph that loops for ever is refused, not kept loading
WARM_UP_LIMIT = 30.0
_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
}


def _message(exc: BaseException) -> str:
    """ONNX Runtime's message without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix."""
    text = " ".join(str(exc).split())
    return text.split(" : ", 3)[-1] if text.startswith("[ONNXRuntimeError]") else text


def _spec(node: Any) -> TensorSpec:
    if node.type not in _TYPES:  # sequences and maps (ZipMap) come out as 2-D float arrays
        return TensorSpec(node.name, np.dtype(np.float32), (-1, -1))
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (node.shape or []))
    return TensorSpec(node.name, np.dtype(_TYPES[node.type]), shape)


def _dense(value: Any) -> np.ndarray:
    """An output as an array; a ZipMap's list of dicts becomes one column per key."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        keys = list(value[0])
        return np.array([[row[k] for k in keys] for row in value], dtype=np.float32)
    return np.asarray(value)


class ONNXModel(Model):
    """An ONNX Runtime session (see module doc)."""

    handler = "onnx"

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_specs = [_spec(node) for node in session.get_inputs()]
        self.output_specs = [_spec(node) for node in session.get_outputs()]
        self.outputs = tuple(spec.name for spec in self.output_specs)
        first = self.input_specs[0]
        if len(self.input_specs) == 1 and first.dtype.kind in "biuf":
            self.dtype = first.dtype.type
            if len(first.shape) == 2 and first.shape[1] > 0:
                self.num_features = first.shape[1]

    # -- inputs -------------------------------------------------------------------

    def _tensor(self, spec: TensorSpec, value: Any) -> np.ndarray:
        array = np.asarray(value)
        if spec.dtype.kind == "U":
            array = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])(array)
        elif len(spec.shape) == 2 and array.ndim <= 2:
            width = spec.shape[1] if spec.shape[1] > 0 else None
            array = codecs.as_rows(array, width, spec.dtype, f"Input '{spec.name}'")
        else:
            try:
                array = array.astype(spec.dtype, copy=False)
            except (TypeError, ValueError):
                raise ModelError(
                    f"Input '{spec.name}' holds {array.dtype} values, the model takes {spec.dtype}."
                ) from None
        expected = spec.shape
        if expected and (
            array.ndim != len(expected) or any(0 <= e != a for e, a in zip(expected, array.shape, strict=True))
        ):
            shown = ", ".join("?" if e < 0 else str(e) for e in expected)
            raise ModelError(f"Input '{spec.name}' has shape {list(array.shape)}, the model expects [{shown}].")
        return array

    def _feed(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.input_specs]
        if len(names) == 1 and len(inputs) == 1:  # a single tensor needs no name
            inputs = {names[0]: next(iter(inputs.values()))}
        missing = [name for name in names if name not in inputs]
        if missing or len(inputs) != len(names):
            raise ModelError(f"The model takes inputs {', '.join(names)}; the request has {', '.join(inputs)}.")
        return {spec.name: self._tensor(spec, inputs[spec.name]) for spec in self.input_specs}

    def decode(self, body: bytes, content_type: str) -> Any:
        media = codecs.content_type(content_type)
        if media == "application/json" and body.lstrip().startswith(b"{"):
            try:
                doc = json.loads(body) if b'"inputs"' in body else None
            except ValueError as exc:  # UnicodeDecodeError included
                raise ModelError(f"The body is not valid JSON: {exc}") from None
            if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):
                return self._feed(doc["inputs"])
        if len(self.input_specs) != 1:
            names = ", ".join(spec.name for spec in self.input_specs)
            raise ModelError(f'The model takes several inputs ({names}): send JSON {{"inputs": {{name: values}}}}.')
        if media == "application/x-npy":
            return self._feed({"": codecs.load_npy(body)})
        return self._feed({"": codecs.decode(body, media, self.num_features, self.dtype)})

    # -- outputs ------------------------------------------------------------------

    def _run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[Any]:
        try:
            return list(self.session.run(list(names), dict(feed)))
        except Exception as exc:  # ONNX Runtime's errors derive from Exception directly
            raise ModelError(f"ONNX Runtime could not run the model: {_message(exc)}") from exc

    def predict(self, data: Any) -> Any:
        return self.predict_output(data, self.outputs[0])

    def predict_output(self, data: Any, output: str) -> Any:
        if output not in self.outputs:
            return super().predict_output(data, output)
        feed = data if isinstance(data, dict) else self._feed({"": data})
        return _dense(self._run([output], feed)[0])

    def encode(self, predictions: Any, accept: str) -> tuple[bytes, str]:
        array = np.asarray(predictions)
        if array.ndim == 2 and array.shape[1] == 1:  # one value per row reads like every other model's
            array = array.reshape(-1)
        return super().encode(array, accept)

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, Any]:
        names = list(outputs) or list(self.outputs)
        unknown = [name for name in names if name not in self.outputs]
        if unknown:
            raise ModelError(f"The model has no output '{unknown[0]}'; it has {', '.join(self.outputs)}.")
        values = self._run(names, self._feed(inputs))
        return {name: _dense(value) for name, value in zip(names, values, strict=True)}

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return list(self.input_specs), list(self.output_specs)

    def warm_up(self, limit: float = WARM_UP_LIMIT) -> None:
        """Run once on zeros (variable dimensions as 1), when every input is numeric.

        A run still going after ``limit`` seconds is stopped (ONNX Runtime's
        ``RunOptions.terminate``) and the model refused: a ``Loop`` of a trillion
        iterations would otherwise hold the load thread, and every load after it, for ever.
        """
        if any(spec.dtype.kind not in "biuf" for spec in self.input_specs):
            return
        import onnxruntime as ort

        feed = {s.name: np.zeros([d if d > 0 else 1 for d in s.shape], dtype=s.dtype) for s in self.input_specs}
        options = ort.RunOptions()
        timer = threading.Timer(limit, setattr, (options, "terminate", True))
        timer.start()
        try:
            self.session.run(None, feed, options)
        except Exception as exc:  # a model may refuse zeros; its first request will tell
            if options.terminate:
                raise ArtifactInvalid(
                    f"The model's first run, on zeros, took more than {limit:g} s: it was stopped."
                ) from exc
            log.debug("warm-up run failed: %s", exc)
        finally:
            timer.cancel()

    def unload(self) -> None:
        self.session = None


class ONNXHandler(Handler):
    """Loads ``*.onnx`` models into ONNX Runtime sessions (see module doc)."""

    name = "onnx"
    module = "onnxruntime"

    def find(self, root: Path) -> Path | None:
        candidates = [p for p in sorted(root.rglob("*.onnx")) if p.is_file()]
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.name == _MODEL_NAME][:1]
        return candidates[0] if len(candidates) == 1 else None

    def load(self, model_file: Path, *, trusted: bool) -> Model:
        ort = require("onnxruntime", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            check_external_data(model_file.read_bytes(), model_file.parent)
        except StructureError as exc:
            raise ArtifactInvalid(f"'{model_file.name}' is not a model ONNX Runtime can load safely: {exc}") from exc
        try:
            # from its path, so external data is looked for next to it, never in the working directory
            session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # InvalidProtobuf, Fail, NotImplemented...: all derive from Exception
            raise ArtifactInvalid(f"'{model_file.name}' is not a model ONNX Runtime can load: {_message(exc)}") from exc
        model = ONNXModel(session)
        model.warm_up()
        return model

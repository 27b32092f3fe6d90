"""The handler interface: how a framework plugs into modelyard.

A :class:`Handler` recognises an unpacked artifact it can load and loads it into a
:class:`Model`. A model decodes a request body into rows, predicts, encodes the
predictions and is unloaded explicitly when the cache evicts it. Handlers import
their framework lazily and fail with the exact ``pip install`` to run when missing.

A model names its outputs (``predict``, ``predict_proba``...): the first is what a
request gets by default, another one is chosen with the ``output`` request option
(:func:`modelyard.codecs.request_options`). The Open Inference Protocol reaches the
same model through :meth:`Model.infer` (named tensors in, named tensors out) and
describes it with :meth:`Model.signature`.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from modelyard import codecs
from modelyard.errors import ArtifactInvalid, ModelError

__all__ = ["Handler", "Model", "TensorSpec", "installed", "require"]


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``a.b`` when ``a`` is absent: False)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # find_spec imports the parents of a dotted name
        return False


def require(module: str, extra: str) -> ModuleType:
    """Import a framework module or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ArtifactInvalid(
            f"The '{module}' package is needed and not installed: pip install 'modelyard[{extra}]'"
        ) from exc


class TensorSpec(NamedTuple):
    """One named tensor of a model's signature: its numpy dtype and shape (-1 where it varies)."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


class Model(ABC):
    """A loaded model. ``invoke`` is the whole request path: decode, predict, encode."""

    #: the handler's name, shown in listings and statistics
    handler: str = ""
    #: the number of input columns the model expects, when it knows it
    num_features: int | None = None
    #: the dtype rows are decoded to (XGBoost reads float32; scikit-learn float64)
    dtype: Any = np.float32
    #: the outputs :meth:`predict_output` can answer; the first is the default
    outputs: tuple[str, ...] = ("predict",)
    #: True when predictions run user code that may block: run them off the event loop
    threaded: bool = False

    def decode(self, body: bytes, content_type: str) -> Any:
        """Turn a request body into the model's input (rows of ``dtype`` by default)."""
        return codecs.decode(body, codecs.content_type(content_type), self.num_features, self.dtype)

    @abstractmethod
    def predict(self, data: Any) -> Any:
        """Predictions for decoded input (the default output)."""

    def predict_output(self, data: Any, output: str) -> Any:
        """The output named ``output`` for decoded input; unknown names are the caller's error."""
        if output == self.outputs[0]:
            return self.predict(data)
        raise ModelError(f"The model has no output '{output}'; it has {', '.join(self.outputs)}.")

    def encode(self, predictions: Any, accept: str) -> tuple[bytes, str]:
        """Serialise predictions in the Accept format; returns body and content type."""
        return codecs.encode(predictions, codecs.accept_type(accept))

    def invoke(
        self, body: bytes, content_type: str, accept: str, custom_attributes: str | None = None
    ) -> tuple[bytes, str]:
        """Answer one request; the Accept header is checked before any work is done.

        ``custom_attributes`` is the request's ``X-Amzn-SageMaker-Custom-Attributes``
        header; its ``output=NAME`` (or a JSON body's ``"output"`` field) picks an output.
        """
        codecs.accept_type(accept)
        data = self.decode(body, content_type)
        output = codecs.request_options(body, content_type, custom_attributes).get("output")
        predictions = self.predict(data) if output is None else self.predict_output(data, output)
        return self.encode(predictions, accept)

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The input and output tensors, as the Open Inference Protocol describes a model."""
        dtype = np.dtype(self.dtype)
        inputs = [TensorSpec("input-0", dtype, (-1, self.num_features or -1))]
        return inputs, [TensorSpec(name, dtype, (-1,)) for name in self.outputs]

    def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] = ()) -> dict[str, Any]:
        """Open Inference Protocol: named input tensors to the named outputs (default: the first).

        Row models take one 1-D or 2-D tensor, whatever its name.
        """
        if len(inputs) != 1:
            raise ModelError(f"The model takes one input tensor; the request has {len(inputs)}: {', '.join(inputs)}.")
        ((name, tensor),) = inputs.items()
        rows = codecs.as_rows(tensor, self.num_features, self.dtype, f"Input '{name}'")
        return {output: self.predict_output(rows, output) for output in (outputs or self.outputs[:1])}

    def unload(self) -> None:  # noqa: B027 - most models only need their references dropped
        """Release what the model holds beyond Python references."""


class Handler(ABC):
    """A framework: finds its model file in an artifact and loads it."""

    #: short name used by ``--framework`` and in listings (``xgboost``)
    name: str = ""
    #: the framework module, imported ahead of the first load when installed
    module: str = ""
    #: import ``module`` when the endpoint starts (else when the first model loads, unless forced)
    import_at_start: bool = True
    #: when several handlers find a model file, the highest priority alone wins (a tie is an error)
    priority: int = 0
    #: also count the small Python objects the load leaves (they escape the C heap measurement)
    python_objects: bool = False

    @abstractmethod
    def find(self, root: Path) -> Path | None:
        """The model file this handler would load from ``root``, or None."""

    def preimport(self) -> bool:
        """Import ``module`` now if it is installed; True when it was."""
        if not self.module or not installed(self.module):
            return False
        importlib.import_module(self.module)
        return True

    def rank(self, root: Path, model_file: Path) -> int:
        """This handler's priority for the artifact in ``root``: ``priority``, unless its content says otherwise."""
        return self.priority

    @abstractmethod
    def load(self, model_file: Path, *, trusted: bool) -> Model:
        """Load the model; code-executing formats only when ``trusted``."""

"""The handler interface: how a framework plugs into modelyard.

A :class:`Handler` recognises an unpacked artifact it can load and loads it into a
:class:`Model`. A model decodes a request body into rows, predicts, encodes the
predictions and is unloaded explicitly when the cache evicts it. Handlers import
their framework lazily and fail with the exact ``pip install`` to run when missing.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any

from modelyard import codecs
from modelyard.errors import ArtifactInvalid

__all__ = ["Handler", "Model", "require"]


def require(module: str, extra: str) -> ModuleType:
    """Import a framework module or explain how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ArtifactInvalid(
            f"This artifact needs the '{module}' package, which is not installed: pip install 'modelyard[{extra}]'"
        ) from exc


class Model(ABC):
    """A loaded model. ``invoke`` is the whole request path: decode, predict, encode."""

    #: the handler's name, shown in listings and statistics
    handler: str = ""
    #: the number of input columns the model expects, when it knows it
    num_features: int | None = None

    def decode(self, body: bytes, content_type: str) -> Any:
        """Turn a request body into the model's input (rows of float32 by default)."""
        return codecs.decode(body, codecs.content_type(content_type), self.num_features)

    @abstractmethod
    def predict(self, data: Any) -> Any:
        """Predictions for decoded input."""

    def encode(self, predictions: Any, accept: str) -> tuple[bytes, str]:
        """Serialise predictions in the Accept format; returns body and content type."""
        return codecs.encode(predictions, codecs.accept_type(accept))

    def invoke(
        self, body: bytes, content_type: str, accept: str, custom_attributes: str | None = None
    ) -> tuple[bytes, str]:
        """Answer one request; the Accept header is checked before any work is done.

        ``custom_attributes`` is the request's ``X-Amzn-SageMaker-Custom-Attributes``
        header, for handlers that take options from it.
        """
        codecs.accept_type(accept)
        return self.encode(self.predict(self.decode(body, content_type)), accept)

    def unload(self) -> None:  # noqa: B027 - most models only need their references dropped
        """Release what the model holds beyond Python references."""


class Handler(ABC):
    """A framework: finds its model file in an artifact and loads it."""

    #: short name used by ``--framework`` and in listings (``xgboost``)
    name: str = ""
    #: the framework module, imported ahead of the first load when installed
    module: str = ""

    @abstractmethod
    def find(self, root: Path) -> Path | None:
        """The model file this handler would load from ``root``, or None."""

    @abstractmethod
    def load(self, model_file: Path, *, trusted: bool) -> Model:
        """Load the model; code-executing formats only when ``trusted``."""

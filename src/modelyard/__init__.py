"""modelyard: multi-model endpoints on your own machines, speaking SageMaker's API.

The public API is re-exported here and imported on first use (PEP 562), so
``import modelyard`` (and the ``modelyard`` command's ``--help``) does not pay for
numpy, the frameworks or the server until one of these names is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.artifacts import Artifact, DiskCache, validate_target
    from modelyard.cache import ModelCache
    from modelyard.endpoint import Endpoint, Prediction
    from modelyard.entries import CacheEvents, Entry
    from modelyard.errors import (
        AccessDenied,
        ArtifactInvalid,
        ArtifactNotFound,
        ArtifactUnreadable,
        CacheFull,
        ControlValidation,
        DiskUnavailable,
        EndpointNotFound,
        InsufficientMemory,
        InvalidSignature,
        InvalidTargetModel,
        ModelAlreadyLoaded,
        ModelError,
        ModelNotLoaded,
        ModelNotReady,
        ModelTooLarge,
        ModelyardError,
        PayloadTooLarge,
        RequestHeadTooLarge,
        RequestTimeout,
        ServiceUnavailable,
        StoreError,
        TooManyConnections,
        UnrecognizedClient,
        UnsupportedContentType,
        ValidationError,
    )
    from modelyard.handlers import HANDLERS, Handler, Loader, Model
    from modelyard.metrics import Metrics
    from modelyard.policy import GDSF, LRU, EvictionPolicy
    from modelyard.server import create_app
    from modelyard.settings import Settings
    from modelyard.store import ObjectInfo, Store, open_store

__version__ = "0.1.0"

#: where each public name lives
_SOURCES: dict[str, str] = {
    **dict.fromkeys(["Artifact", "DiskCache", "validate_target"], "modelyard.artifacts"),
    "ModelCache": "modelyard.cache",
    **dict.fromkeys(["Endpoint", "Prediction"], "modelyard.endpoint"),
    **dict.fromkeys(["CacheEvents", "Entry"], "modelyard.entries"),
    **dict.fromkeys(
        [
            "AccessDenied",
            "ArtifactInvalid",
            "ArtifactNotFound",
            "ArtifactUnreadable",
            "CacheFull",
            "ControlValidation",
            "DiskUnavailable",
            "EndpointNotFound",
            "InsufficientMemory",
            "InvalidSignature",
            "InvalidTargetModel",
            "ModelAlreadyLoaded",
            "ModelError",
            "ModelNotLoaded",
            "ModelNotReady",
            "ModelTooLarge",
            "ModelyardError",
            "PayloadTooLarge",
            "RequestHeadTooLarge",
            "RequestTimeout",
            "ServiceUnavailable",
            "StoreError",
            "TooManyConnections",
            "UnrecognizedClient",
            "UnsupportedContentType",
            "ValidationError",
        ],
        "modelyard.errors",
    ),
    **dict.fromkeys(["HANDLERS", "Handler", "Loader", "Model"], "modelyard.handlers"),
    "Metrics": "modelyard.metrics",
    **dict.fromkeys(["GDSF", "LRU", "EvictionPolicy"], "modelyard.policy"),
    "create_app": "modelyard.server",
    "Settings": "modelyard.settings",
    **dict.fromkeys(["ObjectInfo", "Store", "open_store"], "modelyard.store"),
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SOURCES})


__all__ = [
    "GDSF",
    "HANDLERS",
    "LRU",
    "AccessDenied",
    "Artifact",
    "ArtifactInvalid",
    "ArtifactNotFound",
    "ArtifactUnreadable",
    "CacheEvents",
    "CacheFull",
    "ControlValidation",
    "DiskCache",
    "DiskUnavailable",
    "Endpoint",
    "EndpointNotFound",
    "Entry",
    "EvictionPolicy",
    "Handler",
    "InsufficientMemory",
    "InvalidSignature",
    "InvalidTargetModel",
    "Loader",
    "Metrics",
    "Model",
    "ModelAlreadyLoaded",
    "ModelCache",
    "ModelError",
    "ModelNotLoaded",
    "ModelNotReady",
    "ModelTooLarge",
    "ModelyardError",
    "ObjectInfo",
    "PayloadTooLarge",
    "Prediction",
    "RequestHeadTooLarge",
    "RequestTimeout",
    "ServiceUnavailable",
    "Settings",
    "Store",
    "StoreError",
    "TooManyConnections",
    "UnrecognizedClient",
    "UnsupportedContentType",
    "ValidationError",
    "__version__",
    "create_app",
    "open_store",
    "validate_target",
]

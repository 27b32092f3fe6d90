"""modelyard: multi-model endpoints on your own machines, speaking SageMaker's API."""

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

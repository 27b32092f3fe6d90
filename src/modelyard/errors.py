"""The one error hierarchy of modelyard.

Every error carries the SageMaker error code botocore maps to a ``ClientError`` and
the HTTP status it is served with; the server turns them into responses in one place
(:mod:`modelyard.server.responses`). Third-party exceptions are translated at the
boundary (``raise ArtifactNotFound(...) from exc``), so nothing below leaks as a 500.

::

    ModelyardError                       InternalFailure       500
    ├── ValidationError                  ValidationError       400
    │   ├── EndpointNotFound
    │   ├── InvalidTargetModel
    │   ├── ArtifactNotFound
    │   ├── ArtifactInvalid              (no model file, unsafe member, unpacks too large)
    │   │   └── ArtifactUnreadable       (corrupt or truncated archive)
    │   ├── PayloadTooLarge
    │   ├── UnsupportedContentType
    │   ├── ModelTooLarge                (larger than the whole memory budget)
    │   └── RequestHeadTooLarge          431 (request line and headers over max_header_bytes)
    ├── ModelError                       ModelError            424
    ├── ModelNotReady                    ModelNotReadyException 429
    ├── RequestTimeout                   RequestTimeout        408 (head or body too slow)
    ├── ServiceUnavailable               ServiceUnavailable    503
    │   ├── CacheFull                    (every resident model is pinned or in use)
    │   ├── StoreError                   (the store is unreachable or refuses us)
    │   ├── DiskUnavailable              (the disk cache cannot be written)
    │   └── TooManyConnections           (every connection is busy; Retry-After: 1)
    ├── container and repository APIs:
    │   ├── ModelAlreadyLoaded           409
    │   ├── ModelNotLoaded               404
    │   └── InsufficientMemory           507   (also: a pin past the pinned models' limit)
    └── control plane and authentication:
        ├── ControlValidation            ValidationException   400
        ├── UnrecognizedClient           UnrecognizedClientException 403
        ├── InvalidSignature             InvalidSignatureException 403
        └── AccessDenied                 AccessDeniedException 403
"""

from __future__ import annotations

import traceback

__all__ = [
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
]


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose.

    ``code`` is the AWS error code (``x-amzn-ErrorType``), ``status`` the HTTP status.
    """

    code: str = "InternalFailure"
    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extra(self) -> dict[str, object]:
        """Keys added to the JSON error body besides ``__type`` and ``message``."""
        return {}


class ValidationError(ModelyardError):
    """The request is wrong: the caller must change it."""

    code = "ValidationError"
    status = 400


class EndpointNotFound(ValidationError):
    """The endpoint named in the URL is not served here."""


class InvalidTargetModel(ValidationError):
    """The target model header is missing, too long, or names a path outside the store."""


class ArtifactNotFound(ValidationError):
    """No artifact exists under the store prefix for this target model."""


class ArtifactInvalid(ValidationError):
    """The artifact cannot be unpacked or holds no model a handler can load."""


class ArtifactUnreadable(ArtifactInvalid):
    """The archive is corrupt or truncated (and was not being rewritten while it was read)."""


class PayloadTooLarge(ValidationError):
    """The request body is larger than the endpoint accepts."""


class UnsupportedContentType(ValidationError):
    """The Content-Type or Accept header names a format the model cannot read or write."""


class ModelTooLarge(ValidationError):
    """The model does not fit in the whole memory budget, even with the cache empty."""


class RequestHeadTooLarge(ValidationError):
    """The request line and headers are larger than the server reads."""

    status = 431


class ModelError(ModelyardError):
    """The model's own code failed on this request (bad rows, handler exception)."""

    code = "ModelError"
    status = 424

    def __init__(self, message: str, *, original_status: int = 400) -> None:
        super().__init__(message)
        self.original_status = original_status

    def extra(self) -> dict[str, object]:
        return {"OriginalStatusCode": self.original_status, "OriginalMessage": self.message}


class ModelNotReady(ModelyardError):
    """The model is still downloading or loading after the wait deadline."""

    code = "ModelNotReadyException"
    status = 429


class RequestTimeout(ModelyardError):
    """The client sent its request's head or body too slowly."""

    code = "RequestTimeout"
    status = 408


class ServiceUnavailable(ModelyardError):
    """The server is overloaded (bounded queues full) or shutting down."""

    code = "ServiceUnavailable"
    status = 503


class CacheFull(ServiceUnavailable):
    """No room can be made: every resident model is pinned or serving a request."""


class StoreError(ServiceUnavailable):
    """The store failed in a way that is not the caller's fault (network, permissions)."""


class DiskUnavailable(ServiceUnavailable):
    """The disk cache cannot be written (read-only file system, no permission, disk full)."""


class TooManyConnections(ServiceUnavailable):
    """Every connection the server accepts is busy with a request being served."""


class ModelAlreadyLoaded(ModelyardError):
    """Container API: ``POST /models`` for a name that is already loaded."""

    code = "ConflictException"
    status = 409


class ModelNotLoaded(ModelyardError):
    """Container API: the named model is not loaded."""

    code = "ResourceNotFound"
    status = 404


class InsufficientMemory(ModelyardError):
    """Container API: the model cannot fit in the memory budget."""

    code = "InsufficientMemory"
    status = 507


class ControlValidation(ModelyardError):
    """Control plane: the request is invalid or names a resource that does not exist."""

    code = "ValidationException"
    status = 400

    def extra(self) -> dict[str, object]:
        return {"Message": self.message}  # the control plane's own spelling


class UnrecognizedClient(ModelyardError):
    """The access key is not known to this server."""

    code = "UnrecognizedClientException"
    status = 403


class InvalidSignature(ModelyardError):
    """The SigV4 signature is missing, wrong or expired."""

    code = "InvalidSignatureException"
    status = 403


class AccessDenied(ModelyardError):
    """The access key may not do this (endpoint or target model outside its policy)."""

    code = "AccessDeniedException"
    status = 403


def release_frames(error: BaseException) -> None:
    """Drop the local variables held by ``error``'s traceback and those of its causes.

    A failed load is kept as an exception (by the load task, by reference cycles only
    the garbage collector breaks), and its frames would keep what they held alive with
    it: a model file read into memory, a buffer. The tracebacks stay printable.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]

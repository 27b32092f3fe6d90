"""Request authentication: AWS Signature Version 4, verified with botocore's own signer.

boto3 already signs every request. When access keys are configured, the server
recomputes the signature for the key named in ``Authorization`` with botocore's
``SigV4Auth`` (same canonical request, same string to sign), so no signing code is
hand-written here, and compares in constant time. Unknown key →
``UnrecognizedClientException``; missing, wrong or expired (over 15 minutes off)
signature → ``InvalidSignatureException``; a key whose policy does not cover the
endpoint or the target model (SageMaker's ``sagemaker:TargetModel`` condition) →
``AccessDeniedException``. A key limited to endpoint name patterns is limited to them
on the control plane too: it acts only on models, endpoint configs and endpoints whose
names match.

botocore is imported on the first verification, so a server without keys never loads it.
"""

from __future__ import annotations

import fnmatch
import hmac
import time
from calendar import timegm
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import AccessDenied, InvalidSignature, UnrecognizedClient

__all__ = ["AccessKey", "Verifier"]

MAX_SKEW_SECONDS = 15 * 60


@dataclass(frozen=True)
class AccessKey:
    """An access key and what it may do (``None``: no restriction)."""

    id: str
    secret: str
    endpoints: list[str] | None = None  # glob patterns of endpoint names
    target_prefixes: list[str] | None = None  # target models must start with one of these
    control: bool = True  # may call the control plane
    tags: dict[str, str] = field(default_factory=dict)

    def may_name(self, name: str) -> bool:
        """Whether this key may act on the resource ``name`` (endpoint, config or model)."""
        return self.endpoints is None or any(fnmatch.fnmatchcase(name, p) for p in self.endpoints)

    def may_invoke(self, endpoint: str, target: str | None) -> bool:
        """Whether this key may invoke ``target`` on ``endpoint``."""
        if not self.may_name(endpoint):
            return False
        if self.target_prefixes is not None:
            return target is not None and any(target.startswith(p) for p in self.target_prefixes)
        return True


def _parse_authorization(value: str) -> tuple[str, str, str, list[str], str]:
    """(key id, region, service, signed header names, signature) from an Authorization header."""
    scheme, _, rest = value.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        raise InvalidSignature("Only AWS4-HMAC-SHA256 signatures are accepted.")
    parts = dict(p.strip().partition("=")[::2] for p in rest.split(","))
    try:
        key_id, _, region, service, terminator = parts["Credential"].split("/")
        signed = parts["SignedHeaders"].split(";")
        signature = parts["Signature"]
    except (KeyError, ValueError):
        raise InvalidSignature("The Authorization header is malformed.") from None
    if terminator != "aws4_request":
        raise InvalidSignature("The credential scope must end with aws4_request.")
    return key_id, region, service, signed, signature


def _epoch(amz_date: str) -> float:
    try:
        return float(timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        raise InvalidSignature(f"X-Amz-Date '{amz_date}' is not a date like 20260101T000000Z.") from None


class Verifier:
    """Checks signatures and policies for a set of access keys."""

    def __init__(self, keys: Iterable[AccessKey], *, clock: Callable[[], float] = time.time) -> None:
        self.keys = {key.id: key for key in keys}
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self.keys)

    def verify(self, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes) -> AccessKey:
        """The key that signed this request; raises when the signature does not hold.

        ``headers`` maps lower-case names to values as received.
        """
        authorization = headers.get("authorization")
        if not authorization:
            raise InvalidSignature("Missing Authentication Token: the request must be signed (SigV4).")
        key_id, region, service, signed, signature = _parse_authorization(authorization)
        key = self.keys.get(key_id)
        if key is None:
            raise UnrecognizedClient("The security token included in the request is invalid.")
        amz_date = headers.get("x-amz-date", "")
        skew = abs(self._clock() - _epoch(amz_date))
        if skew > MAX_SKEW_SECONDS:
            raise InvalidSignature(f"Signature expired: {amz_date} is more than 15 minutes from the server's time.")
        if "host" not in signed:
            raise InvalidSignature("The host header must be signed.")
        missing = [name for name in signed if name not in headers]
        if missing:
            raise InvalidSignature(f"The signed header {missing[0]} is missing from the request.")
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{raw_path}" + (f"?{query}" if query else ""),
            data=body,
            headers={name: headers[name] for name in signed},
        )
        request.context["timestamp"] = amz_date
        signer: Any = SigV4Auth(Credentials(key.id, key.secret), service, region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if not hmac.compare_digest(expected, signature):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        return key

    @staticmethod
    def authorize_invoke(key: AccessKey, endpoint: str, target: str | None) -> None:
        """Raise :class:`AccessDenied` unless ``key`` may invoke ``target`` on ``endpoint``."""
        if not key.may_invoke(endpoint, target):
            raise AccessDenied(
                f"User: {key.id} is not authorized to perform: sagemaker:InvokeEndpoint on resource: "
                f"endpoint/{endpoint} with target model {target!r}"
            )

    @staticmethod
    def authorize_control(key: AccessKey, operation: str) -> None:
        """Raise :class:`AccessDenied` unless ``key`` may use the control plane."""
        if not key.control:
            raise AccessDenied(f"User: {key.id} is not authorized to perform: sagemaker:{operation}")

    @staticmethod
    def authorize_resource(key: AccessKey, operation: str, arn: str, name: str) -> None:
        """Raise :class:`AccessDenied` unless ``key`` may act on the resource ``name`` (``arn``)."""
        if not key.may_name(name):
            raise AccessDenied(f"User: {key.id} is not authorized to perform: sagemaker:{operation} on resource: {arn}")

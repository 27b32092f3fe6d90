from __future__ import annotations

import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelyard.control.auth import AccessKey, Verifier
from modelyard.errors import AccessDenied, InvalidSignature, UnrecognizedClient

HOST = "127.0.0.1:8080"
PATH = "/endpoints/houses/invocations"


def signed(body: bytes = b"1,2,3", key: str = "AKIDEXAMPLE", secret: str = "secret") -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"http://{HOST}{PATH}", data=body, headers={"Content-Type": "text/csv"})
    SigV4Auth(Credentials(key, secret), "sagemaker", "us-east-1").add_auth(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    headers["host"] = HOST
    return headers


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(
        [
            AccessKey("AKIDEXAMPLE", "secret"),
            AccessKey("LIMITED", "s2", endpoints=["houses"], target_prefixes=["eu/"], control=False),
        ]
    )


def test_right_key_passes(verifier: Verifier) -> None:
    assert verifier.verify("POST", PATH, "", signed(), b"1,2,3").id == "AKIDEXAMPLE"


def test_wrong_secret_tampered_body_and_unknown_key(verifier: Verifier) -> None:
    with pytest.raises(InvalidSignature, match="does not match"):
        verifier.verify("POST", PATH, "", signed(secret="wrong"), b"1,2,3")
    with pytest.raises(InvalidSignature, match="does not match"):
        verifier.verify("POST", PATH, "", signed(), b"1,2,4")
    with pytest.raises(UnrecognizedClient):
        verifier.verify("POST", PATH, "", signed(key="NOPE"), b"1,2,3")
    with pytest.raises(InvalidSignature, match="Missing Authentication Token"):
        verifier.verify("POST", PATH, "", {"host": HOST}, b"1,2,3")


def test_expired_signature(verifier: Verifier) -> None:
    late = Verifier(verifier.keys.values(), clock=lambda: time.time() + 16 * 60)
    with pytest.raises(InvalidSignature, match="Signature expired"):
        late.verify("POST", PATH, "", signed(), b"1,2,3")


def test_policies() -> None:
    limited = AccessKey("LIMITED", "s2", endpoints=["houses"], target_prefixes=["eu/"], control=False)
    Verifier.authorize_invoke(limited, "houses", "eu/de/Berlin.tar.gz")
    with pytest.raises(AccessDenied):
        Verifier.authorize_invoke(limited, "houses", "us/Houston.tar.gz")
    with pytest.raises(AccessDenied):
        Verifier.authorize_invoke(limited, "other", "eu/de/Berlin.tar.gz")
    with pytest.raises(AccessDenied):
        Verifier.authorize_control(limited, "CreateEndpoint")

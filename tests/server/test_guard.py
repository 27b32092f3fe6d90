"""Headers read once, signatures that cannot be redirected, and state changes a web page cannot make."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelyard.server.run import BackgroundServer
from tests.conftest import runtime_client
from tests.fixtures import ROW, xgb_artifact

Headers = list[tuple[str, str]]


def raw(url: str, method: str, path: str, headers: Headers, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with exactly these headers, in this order (duplicates included)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def signed(url: str, path: str, target: str, key: str = "ADMIN", secret: str = "admin-secret") -> Headers:
    """boto3's headers for an invocation of ``target``, SigV4-signed."""
    request = AWSRequest(
        method="POST",
        url=f"{url}{path}",
        data=ROW,
        headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target},
    )
    SigV4Auth(Credentials(key, secret), "sagemaker", "us-east-1").add_auth(request)
    return [("Host", urlsplit(url).netloc), *request.headers.items()]


@pytest.fixture
def two_models(store_dir: Path) -> Path:
    (store_dir / "public.tar.gz").write_bytes(xgb_artifact(1))
    (store_dir / "secret.tar.gz").write_bytes(xgb_artifact(2))
    return store_dir


KEYS = [{"id": "ADMIN", "secret": "admin-secret"}]
INVOKE = "/endpoints/houses/invocations"


def test_a_second_target_header_cannot_redirect_a_signed_request(
    serve: Callable[..., BackgroundServer], two_models: Path
) -> None:
    server = serve(two_models, access_keys=KEYS, endpoint_name="houses")
    headers = signed(server.url, INVOKE, "public.tar.gz")
    assert raw(server.url, "POST", INVOKE, headers, ROW)[0] == 200
    redirected = [("X-Amzn-SageMaker-Target-Model", "secret.tar.gz"), *headers]
    status, answer, body = raw(server.url, "POST", INVOKE, redirected, ROW)
    assert (status, answer["x-amzn-errortype"]) == (400, "ValidationError")
    assert b"x-amzn-sagemaker-target-model header is given more than once" in body
    assert server.endpoint is not None
    assert server.endpoint.cache.get("secret.tar.gz") is None  # never loaded, never answered


@pytest.mark.parametrize(
    "name", ["Content-Type", "X-Amzn-SageMaker-Target-Variant", "X-Amz-Date", "Authorization", "Host", "Accept"]
)
def test_meaningful_headers_are_refused_twice(
    serve: Callable[..., BackgroundServer], two_models: Path, name: str
) -> None:
    server = serve(two_models, endpoint_name="houses")
    headers = signed(server.url, INVOKE, "public.tar.gz")
    value = next((v for n, v in headers if n.lower() == name.lower()), None)
    twice = [*headers, (name, value)] if value is not None else [*headers, (name, "AllTraffic"), (name, "AllTraffic")]
    status, answer, _ = raw(server.url, "POST", INVOKE, twice, ROW)
    assert (status, answer.get("x-amzn-errortype")) == (400, "ValidationError")


def test_a_signed_host_must_be_sent(serve: Callable[..., BackgroundServer], two_models: Path) -> None:
    server = serve(two_models, access_keys=KEYS, endpoint_name="houses")
    headers = [(n, v) for n, v in signed(server.url, INVOKE, "public.tar.gz") if n.lower() != "host"]
    status, answer, body = raw(server.url, "POST", INVOKE, headers, ROW)
    assert (status, answer["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert b"host" in body


def pin(server: BackgroundServer, name: str, headers: Headers) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"model_name": name, "url": name}).encode()
    return raw(server.url, "POST", "/models", [("Host", urlsplit(server.url).netloc), *headers], body)


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Type", "text/plain")],
        [("Content-Type", "application/x-www-form-urlencoded")],
        [],
        [("Content-Type", "application/json"), ("Origin", "http://evil.example")],
        [("Content-Type", "application/json"), ("Origin", "null")],
        [("Content-Type", "application/json"), ("Sec-Fetch-Site", "cross-site")],
    ],
)
def test_a_web_page_cannot_pin_models(
    serve: Callable[..., BackgroundServer], two_models: Path, headers: Headers
) -> None:
    server = serve(two_models)
    status, _, _ = pin(server, "public.tar.gz", headers)
    assert status in (400, 403)
    assert server.endpoint is not None
    assert server.endpoint.cache.get("public.tar.gz") is None
    same_origin = [("Content-Type", "application/json"), ("Origin", server.url)]
    assert pin(server, "public.tar.gz", same_origin)[0] == 200


def test_pins_need_a_signature_when_keys_are_configured(
    serve: Callable[..., BackgroundServer], two_models: Path
) -> None:
    server = serve(two_models, access_keys=KEYS)
    status, answer, _ = pin(server, "public.tar.gz", [("Content-Type", "application/json")])
    assert (status, answer["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    body = json.dumps({"model_name": "public.tar.gz", "url": "public.tar.gz"}).encode()
    request = AWSRequest(
        method="POST", url=f"{server.url}/models", data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials("ADMIN", "admin-secret"), "sagemaker", "us-east-1").add_auth(request)
    headers = [("Host", urlsplit(server.url).netloc), *request.headers.items()]
    assert raw(server.url, "POST", "/models", headers, body)[0] == 200


def test_pins_hold_at_most_their_share_of_the_budget(serve: Callable[..., BackgroundServer], store_dir: Path) -> None:
    """14 pins filled a 2 MiB budget and every other model then got 503: pins now stop at their share."""
    for i in range(16):
        (store_dir / f"m{i}.tar.gz").write_bytes(xgb_artifact(i))
    server = serve(store_dir, memory=256 * 1024, pinned_fraction=0.5)
    assert server.endpoint is not None
    cache = server.endpoint.cache
    statuses = [pin(server, f"m{i}.tar.gz", [("Content-Type", "application/json")])[0] for i in range(15)]
    assert set(statuses) == {200, 507}
    assert statuses.index(507) >= 2  # the first pins fit
    assert sum(e.size for e in cache.entries() if e.pinned) <= 128 * 1024
    client = runtime_client(server.url)
    for i in range(16):  # every model is still served
        client.invoke_endpoint(EndpointName="modelyard", TargetModel=f"m{i}.tar.gz", ContentType="text/csv", Body=ROW)

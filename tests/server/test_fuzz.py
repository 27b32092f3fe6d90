"""Every route that parses a body, fuzzed: whatever a client sends, the answer is never a 5xx.

Bodies come from Hypothesis: arbitrary JSON built from each route's own vocabulary (so
generated documents reach past the first type check), valid requests with one member
replaced by anything, nesting far deeper than any parser's stack, numbers out of every
range, and raw bytes. One real server on loopback answers them all; after each route's
run it still serves a real model.
"""

from __future__ import annotations

import http.client
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelyard.control.shapes import CreateEndpointConfig, CreateModel, Listing
from modelyard.server.run import BackgroundServer
from modelyard.settings import Settings
from tests.fixtures import ROW, xgb_artifact

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None
)
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    root = tmp_path_factory.mktemp("fuzz")
    store = root / "store"
    store.mkdir()
    (store / "Houston_TX.tar.gz").write_bytes(xgb_artifact(1))
    settings_ = Settings.load(
        store=str(store),
        host="127.0.0.1",
        port=0,
        log_level="critical",
        disk_cache=root / "disk",
        data_dir=root / "data",
        model_roots=[root],
    )
    with BackgroundServer(settings_) as running:
        yield running


def send(server: BackgroundServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def still_serving(server: BackgroundServer) -> None:
    status = send(
        server,
        "POST",
        "/endpoints/modelyard/invocations",
        ROW,
        {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "Houston_TX.tar.gz"},
    )
    assert status == 200


def _names(*shapes: Any) -> list[str]:
    found: set[str] = set()

    def walk(shape: Any) -> None:
        for name, field in shape.model_fields.items():
            found.add(name)
            for inner in getattr(field.annotation, "__args__", ()) or ():
                if hasattr(inner, "model_fields"):
                    walk(inner)

    for shape in shapes:
        walk(shape)
    return sorted(found)


CONTROL_KEYS = [
    *_names(CreateModel, CreateEndpointConfig, Listing),
    "ProductionVariants",
    "VariantName",
    "ModelDataUrl",
    "Environment",
    "DesiredWeightsAndCapacities",
    "ResourceArn",
    "TagKeys",
]
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 2**63, 1e23, -1e23, 1e-300]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40), st.sampled_from(["x", "", "abc", "1"]))


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), inner, max_size=5),
        ),
        max_leaves=25,
    )


def mutated(valid: dict[str, Any], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with one member, at any depth, replaced by anything."""

    def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix] if prefix else []
        if isinstance(doc, dict):
            for key, value in doc.items():
                found += paths(value, (*prefix, key))
        elif isinstance(doc, list):
            for index, value in enumerate(doc):
                found += paths(value, (*prefix, index))
        return found

    def replace(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(valid))
        holder = doc
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = value
        return doc  # type: ignore[no-any-return]

    return st.builds(replace, st.sampled_from(paths(valid)), json_values(keys))


VALID_CONTROL: dict[str, dict[str, Any]] = {
    "CreateModel": {
        "ModelName": "m",
        "Containers": [{"Image": "xgboost", "ModelDataUrl": "s3://b/p/", "Mode": "MultiModel", "Environment": {}}],
    },
    "CreateEndpointConfig": {
        "EndpointConfigName": "c",
        "ProductionVariants": [
            {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    },
    "ListEndpoints": {"MaxResults": 10, "NextToken": "0", "SortBy": "Name", "StatusEquals": "InService"},
    "UpdateEndpointWeightsAndCapacities": {
        "EndpointName": "e",
        "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": 1, "DesiredInstanceCount": 1}],
    },
    "AddTags": {
        "ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m",
        "Tags": [{"Key": "k", "Value": "v"}],
    },
}
OPERATIONS = [
    "CreateModel",
    "DescribeModel",
    "ListModels",
    "DeleteModel",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "ListEndpointConfigs",
    "DeleteEndpointConfig",
    "CreateEndpoint",
    "DescribeEndpoint",
    "ListEndpoints",
    "UpdateEndpoint",
    "UpdateEndpointWeightsAndCapacities",
    "DeleteEndpoint",
    "AddTags",
    "ListTags",
    "DeleteTags",
]
control_bodies = st.one_of(
    json_values(CONTROL_KEYS).map(lambda doc: json.dumps(doc).encode()),
    *(mutated(doc, CONTROL_KEYS).map(lambda d: json.dumps(d).encode()) for doc in VALID_CONTROL.values()),
    st.binary(max_size=64),
)


@FUZZ
@given(operation=st.sampled_from(OPERATIONS), body=control_bodies)
@example(operation="CreateModel", body=DEEP)
@example(operation="CreateModel", body=DEEP_OBJECT)
@example(operation="ListModels", body=b'{"NextToken": "abc", "MaxResults": "x"}')
@example(operation="CreateEndpointConfig", body=b'{"EndpointConfigName": "c", "ProductionVariants": [1]}')
@example(operation="CreateModel", body=b'{"ModelName": "m", "Containers": ["x"]}')
def test_control_plane(server: BackgroundServer, operation: str, body: bytes) -> None:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SageMaker.{operation}"}
    assert send(server, "POST", "/", body, headers) < 500


def test_control_plane_then_serves(server: BackgroundServer) -> None:
    still_serving(server)


@FUZZ
@given(body=st.one_of(json_values(["model_name", "url"]).map(lambda d: json.dumps(d).encode()), st.binary(max_size=64)))
@example(body=DEEP)
@example(body=b'{"model_name": ' + DEEP + b"}")
@example(body=b'{"model_name": 1, "url": ["x"]}')
def test_container_load(server: BackgroundServer, body: bytes) -> None:
    assert send(server, "POST", "/models", body, {"Content-Type": "application/json"}) < 500


TENSOR_KEYS = ["inputs", "outputs", "name", "shape", "datatype", "data", "parameters", "binary_data_size", "id"]
VALID_INFER: dict[str, Any] = {
    "id": "1",
    "inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP32", "data": [1994, 3188, 5, 1.5, 1.62, 3]}],
    "outputs": [{"name": "predict", "parameters": {"binary_data": False}}],
    "parameters": {"binary_data_output": False},
}
datatypes = st.sampled_from(["BOOL", "UINT8", "UINT64", "INT8", "INT64", "FP16", "FP32", "FP64", "BYTES", "X"])


@st.composite
def infer_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return json.dumps(draw(json_values(TENSOR_KEYS))).encode(), {}
    if kind == 1:
        return json.dumps(draw(mutated(VALID_INFER, TENSOR_KEYS))).encode(), {}
    if kind == 2:  # typed data of any datatype, numbers out of range included
        doc = {
            "inputs": [
                {"name": "x", "shape": [1, 6], "datatype": draw(datatypes), "data": draw(st.lists(scalars, max_size=8))}
            ]
        }
        return json.dumps(doc).encode(), {}
    tensor = draw(st.binary(max_size=48))  # the binary extension, with any header length
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": draw(st.lists(st.integers(-2, 8), max_size=3)),
                    "datatype": draw(datatypes),
                    "parameters": {"binary_data_size": draw(st.integers(-1, 64))},
                }
            ]
        }
    ).encode()
    length = draw(st.one_of(st.just(len(header)), st.integers(-2, len(header) + 60)))
    return header + tensor, {"Inference-Header-Content-Length": str(length)}


@FUZZ
@given(request=infer_requests())
@example(request=(DEEP, {}))
@example(request=(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [-1]}]}', {}))
@example(request=(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1e23]}]}', {}))
@example(request=(b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ' + DEEP + b"}]}", {}))
@example(
    request=(
        json.dumps(
            {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]}
        ).encode()
        + struct.pack("<I", 99),
        {"Inference-Header-Content-Length": "77"},
    )
)
def test_v2_infer(server: BackgroundServer, request: tuple[bytes, dict[str, str]]) -> None:
    body, headers = request
    assert send(server, "POST", "/v2/models/Houston_TX.tar.gz/infer", body, headers) < 500


@FUZZ
@given(
    path=st.sampled_from(
        ["/v2/repository/index", "/v2/repository/models/Houston_TX.tar.gz/load", "/v2/repository/models/x/unload"]
    ),
    body=st.one_of(json_values(["ready", "parameters"]).map(lambda d: json.dumps(d).encode()), st.binary(max_size=32)),
)
@example(path="/v2/repository/index", body=DEEP)
def test_v2_repository(server: BackgroundServer, path: str, body: bytes) -> None:
    assert send(server, "POST", path, body, {}) < 500


content_types = st.sampled_from(
    ["text/csv", "text/libsvm", "application/json", "application/jsonlines", "application/x-npy", "text/plain", ""]
)


@FUZZ
@given(
    content_type=content_types,
    accept=st.sampled_from(["text/csv", "application/json", "application/x-npy", "*/*", "image/png", ""]),
    body=st.one_of(
        st.binary(max_size=80),
        st.lists(st.lists(scalars, max_size=7), max_size=4).map(lambda rows: json.dumps({"instances": rows}).encode()),
        st.lists(st.lists(st.text("0123456789.,-e nanif", max_size=8), max_size=7), max_size=4).map(
            lambda rows: "\n".join(",".join(r) for r in rows).encode()
        ),
    ),
    attributes=st.one_of(st.none(), st.text(max_size=30)),
)
@example(content_type="application/json", accept="", body=DEEP, attributes=None)
@example(
    content_type="application/json", accept="", body=b'{"instances": ' + DEEP + b', "output": "x"}', attributes=None
)
def test_invocations(
    server: BackgroundServer, content_type: str, accept: str, body: bytes, attributes: str | None
) -> None:
    headers = {"X-Amzn-SageMaker-Target-Model": "Houston_TX.tar.gz"}
    if content_type:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    if attributes is not None and attributes.isprintable() and attributes.isascii():
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    assert send(server, "POST", "/endpoints/modelyard/invocations", body, headers) < 500


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["sort", "order", "offset", "limit", "q", "state", "endpoint"]),
        st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70).map(str)),
        max_size=5,
    )
)
def test_stats_queries(server: BackgroundServer, query: dict[str, str]) -> None:
    from urllib.parse import urlencode

    assert send(server, "GET", "/stats/models?" + urlencode(query), b"", {}) < 500


def test_everything_still_serves(server: BackgroundServer, tmp_path: Path) -> None:
    still_serving(server)

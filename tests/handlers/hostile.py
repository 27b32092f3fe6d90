"""Real models of every kind a loader meets, a UBJSON codec to edit them, and hostile artifacts.

The codec is written apart from :mod:`modelyard.handlers.structure` on purpose: the
tests check that module against it. Typed arrays (what XGBoost writes for every
number array) stay typed through a decode, an edit and an encode.
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.demo import make_artifact
from tests.fixtures import booster_bytes, training_data

_FORMATS = {"d": ">f", "D": ">d", "i": ">b", "U": ">B", "I": ">h", "l": ">i", "L": ">q", "C": ">b"}


@dataclass
class Typed:
    """A UBJSON typed array: its element type (``d``, ``l``, ``U``...) and values."""

    kind: str
    values: list[Any]


def ubj_decode(data: bytes) -> Any:
    """A UBJSON document as Python values, typed arrays as :class:`Typed`."""
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        chunk = data[at : at + n]
        if len(chunk) != n:
            raise ValueError("truncated")
        at += n
        return chunk

    def length() -> int:
        assert take(1) == b"L"
        return int(struct.unpack(">q", take(8))[0])

    def value() -> Any:
        marker = take(1).decode("latin-1")
        if marker == "{":
            out = {}
            while data[at : at + 1] != b"}":
                key = take(length()).decode()
                out[key] = value()
            take(1)
            return out
        if marker == "[":
            if data[at : at + 1] == b"$":
                take(1)
                kind = take(1).decode()
                assert take(1) == b"#"
                n = length()
                fmt = _FORMATS[kind]
                return Typed(kind, list(struct.unpack(">" + fmt[1] * n, take(n * struct.calcsize(fmt)))))
            if data[at : at + 1] == b"#":
                take(1)
                return [value() for _ in range(length())]
            items = []
            while data[at : at + 1] != b"]":
                items.append(value())
            take(1)
            return items
        if marker == "S":
            return take(length()).decode()
        if marker in "ZTF":
            return {"Z": None, "T": True, "F": False}[marker]
        fmt = _FORMATS[marker]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    return value()


def ubj_encode(document: Any) -> bytes:
    """Python values as UBJSON the way XGBoost writes it (counted arrays, ``L`` lengths)."""
    out = bytearray()

    def length(n: int) -> None:
        out.extend(b"L" + struct.pack(">q", n))

    def encode(value: Any) -> None:
        if isinstance(value, dict):
            out.extend(b"{")
            for key, item in value.items():
                raw = key.encode()
                length(len(raw))
                out.extend(raw)
                encode(item)
            out.extend(b"}")
        elif isinstance(value, Typed):
            fmt = _FORMATS[value.kind]
            out.extend(b"[$" + value.kind.encode() + b"#")
            length(len(value.values))
            out.extend(struct.pack(">" + fmt[1] * len(value.values), *value.values))
        elif isinstance(value, list):
            out.extend(b"[#")
            length(len(value))
            for item in value:
                encode(item)
        elif isinstance(value, str):
            out.extend(b"S")
            length(len(value.encode()))
            out.extend(value.encode())
        elif value is None or isinstance(value, bool):
            out.extend(b"Z" if value is None else b"T" if value else b"F")
        elif isinstance(value, int):  # the narrowest marker, as XGBoost picks it
            fits = [m for m, bits in (("i", 7), ("I", 15), ("l", 31)) if -(2**bits) < value < 2**bits - 1]
            marker = fits[0] if fits else "L"
            out.extend(marker.encode() + struct.pack(_FORMATS[marker], value))
        else:
            out.extend(b"d" + struct.pack(">f", value))

    encode(document)
    return bytes(out)


def as_json(document: Any) -> bytes:
    """A decoded document as JSON text (typed arrays become plain arrays)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Typed):
            return value.values
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(document)).encode()


@functools.cache
def xgboost_model(kind: str = "regressor", fmt: str = "ubj") -> bytes:
    """A small trained XGBoost model of each kind modelyard may be handed, serialised as ``fmt``.

    Kinds: ``regressor``, ``multiclass``, ``categorical`` (feature 1 categorical),
    ``dart``, ``linear`` (gblinear), ``multitarget`` (vector-leaf trees), ``forest``
    (three parallel trees per round), ``many`` (40 trees: read by column).
    """
    import xgboost as xgb

    if kind == "regressor":
        return booster_bytes(0, fmt)
    x, y = training_data(0)
    x = (x / 500).astype(np.float32)
    params: dict[str, Any] = {"max_depth": 3, "nthread": 1, "seed": 0}
    rounds = 4
    label: Any = y
    types = None
    if kind == "multiclass":
        params |= {"objective": "multi:softprob", "num_class": 3}
        label = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    elif kind == "categorical":
        x[:, 1] = np.floor(x[:, 1]) % 7
        types = ["q", "c", "q", "q", "q", "q"]
        params["max_cat_to_onehot"] = 1
    elif kind == "dart":
        params |= {"booster": "dart", "rate_drop": 0.3}
    elif kind == "linear":
        params = {"booster": "gblinear", "nthread": 1, "seed": 0}
    elif kind == "multitarget":
        params |= {"multi_strategy": "multi_output_tree", "tree_method": "hist"}
        label = np.stack([y, x[:, 2]], axis=1)
    elif kind == "forest":
        params |= {"num_parallel_tree": 3, "subsample": 0.8}
    elif kind == "many":
        rounds = 40
    matrix = xgb.DMatrix(x, label=label, feature_types=types, enable_categorical=types is not None)
    return bytes(xgb.train(params, matrix, num_boost_round=rounds).save_raw(fmt))


def xgboost_document(kind: str = "regressor") -> Any:
    """A model decoded for editing (from UBJSON: typed arrays kept)."""
    return ubj_decode(xgboost_model(kind, "ubj"))


def nested_json(depth: int) -> bytes:
    """An XGBoost-looking JSON model nested ``depth`` arrays deep."""
    return b'{"learner":' + b"[" * depth + b"]" * depth + b"}"


def nested_ubjson(depth: int) -> bytes:
    """The same in UBJSON."""
    return b"{L" + struct.pack(">q", 7) + b"learner" + b"[" * depth + b"]" * depth + b"}"


def tarball(name: str, data: bytes) -> bytes:
    """A SageMaker-style model.tar.gz holding one file."""
    return make_artifact({name: data})


@functools.cache
def lightgbm_model(kind: str = "regressor") -> bytes:
    """A small LightGBM text model: ``regressor``, ``multiclass``, ``categorical`` (feature 1) or ``linear``."""
    import lightgbm as lgb

    from tests.fixtures import lightgbm_text

    if kind in ("regressor", "multiclass"):
        return lightgbm_text(0, 3 if kind == "multiclass" else 1)
    x, y = training_data(0)
    params: dict[str, Any] = {"verbose": -1, "num_threads": 1, "num_leaves": 7, "seed": 0}
    categorical: list[int] = []
    if kind == "categorical":
        x[:, 1] = np.floor(x[:, 1] / 500)
        y = y + 3000 * (x[:, 1] % 3)
        categorical = [1]
        params |= {"min_data_per_group": 5, "cat_smooth": 1}
    else:
        params["linear_tree"] = True
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=categorical or "auto"), num_boost_round=10)
    return str(booster.model_to_string()).encode()


def onnx_external(location: str, length: int, offset: int = 0) -> bytes:
    """An ONNX model answering, whatever its input ``X``, the ``length`` bytes of its external data file."""
    from onnx import TensorProto, helper

    weights = TensorProto()
    weights.name = "W"
    weights.data_type = TensorProto.UINT8
    weights.dims.append(length)
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["Y"])],
        "external",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.UINT8, [length])],
        initializer=[weights],
    )
    return bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    )


def onnx_endless_loop() -> bytes:
    """An ONNX model whose every run loops a trillion times."""
    from onnx import TensorProto, helper, numpy_helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["x_in"], ["x_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, None),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "C", "X"], ["Y"], body=body)],
        "loop",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[
            numpy_helper.from_array(np.array(10**12, np.int64), "M"),
            numpy_helper.from_array(np.array(True), "C"),
        ],
    )
    return bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
    )


def protobuf_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def onnx_nested(levels: int) -> bytes:
    """An ONNX model of graphs inside node attributes inside graphs, ``levels`` times."""
    graph = protobuf_field(2, b"leaf")  # GraphProto.name
    for _ in range(levels):
        attribute = protobuf_field(1, b"then_branch") + protobuf_field(6, graph)  # AttributeProto.name, .g
        node = protobuf_field(4, b"If") + protobuf_field(5, attribute)  # NodeProto.op_type, .attribute
        graph = protobuf_field(1, node)  # GraphProto.node
    return protobuf_field(7, graph)  # ModelProto.graph

"""V2 tensors on the wire: JSON ``data`` and the binary tensor data extension.

An infer request is a JSON header, optionally followed by binary data: with an
``Inference-Header-Content-Length`` header, the JSON is that many bytes and each
input with ``parameters.binary_data_size`` takes its bytes from the rest, in order
(numbers little-endian; ``BYTES`` elements as a 4-byte little-endian length and the
bytes). Responses use the same layout when an output asks for ``binary_data`` (or
the request sets ``binary_data_output``). Malformed requests are
:class:`ValidationError`, naming the input that failed.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard import codecs
from modelyard.errors import ValidationError

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "datatype",
    "encode_response",
    "json_part",
    "parameters",
    "parse_inputs",
    "requested_outputs",
    "split",
]

#: V2 datatypes and the numpy types they travel as
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_NAMES = {np.dtype(t): name for name, t in DATATYPES.items() if name != "BYTES"}
#: the binary extension's header: the size of the JSON part of a body
HEADER_LENGTH = "inference-header-content-length"


def datatype(dtype: np.dtype[Any]) -> str:
    """The V2 datatype of a numpy dtype (text and objects are ``BYTES``)."""
    return _NAMES.get(dtype, "BYTES")


def json_part(data: bytes, what: str) -> Any:
    """A JSON request part (``{}`` when empty); ``what`` names it in the error."""
    try:
        return json.loads(data) if data.strip() else {}
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ValidationError(f"The {what} is not valid JSON: {str(exc)[:200]}") from exc


def parameters(holder: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """The ``parameters`` object of a request, an input or an output (``{}`` when absent)."""
    found = holder.get("parameters")
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise ValidationError(f"The parameters of {what} must be an object, not {type(found).__name__}.")
    return found


#: what each datatype's JSON data may hold (bool is an int in Python: listed apart)
_JSON_KINDS: dict[str, tuple[type, ...]] = {"BOOL": (bool,), "BYTES": (str,)}
_INTEGERS = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")


def _json_array(data: Any, kind: str, name: str) -> np.ndarray:
    """JSON ``data`` (flat or nested lists) as a flat array of ``kind``, every element checked."""
    flat = np.asarray(data if isinstance(data, list) else [data], dtype=object).reshape(-1)
    if kind in _INTEGERS:
        allowed: tuple[type, ...] = (int,)
    elif kind in _JSON_KINDS:
        allowed = _JSON_KINDS[kind]
    else:
        allowed = (int, float, type(None))  # null: a missing value (NaN)
    found = {type(value) for value in flat}
    wrong = found - set(allowed) if kind == "BOOL" else {t for t in found if t is bool or t not in allowed}
    if list in wrong:
        raise ValidationError(f"Input '{name}': its data holds lists of uneven lengths.")
    if wrong:
        shown = ", ".join(sorted("null" if t is type(None) else t.__name__ for t in wrong))
        raise ValidationError(f"Input '{name}': {kind} data cannot hold {shown} values.")
    if kind == "BYTES":
        return flat
    dtype = np.dtype(DATATYPES[kind])
    if kind in _INTEGERS:
        info = np.iinfo(dtype)
        if flat.size and (min(flat) < info.min or max(flat) > info.max):
            raise ValidationError(f"Input '{name}': a value is out of the range of {kind} ({info.min} to {info.max}).")
        return flat.astype(dtype)
    if type(None) in found:
        flat = np.where([v is None for v in flat], np.nan, flat)
    with np.errstate(over="raise"):
        try:
            return flat.astype(dtype)
        except FloatingPointError:
            raise ValidationError(f"Input '{name}': a value is out of the range of {kind}.") from None


def split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """The JSON part of an infer request and the binary tensor data after it."""
    size = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ValidationError(f"Inference-Header-Content-Length {header_length!r} does not fit the body.")
        size = int(header_length)
    doc = json_part(body[:size], "inference request")
    if not isinstance(doc, dict):
        raise ValidationError("The inference request must be a JSON object.")
    return doc, memoryview(body)[size:]


def _bytes_elements(chunk: memoryview, name: str) -> list[bytes]:
    items, at = [], 0
    while at < len(chunk):
        if at + 4 > len(chunk):
            raise ValidationError(f"Input '{name}': truncated BYTES element at offset {at}.")
        (length,) = struct.unpack_from("<I", chunk, at)
        if at + 4 + length > len(chunk):
            raise ValidationError(f"Input '{name}': BYTES element at offset {at} runs past the data.")
        items.append(bytes(chunk[at + 4 : at + 4 + length]))
        at += 4 + length
    return items


def _input(tensor: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One request input as an array; returns its name, array and the binary bytes it used."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise ValidationError("Every input must be an object with a name, a shape, a datatype and data.")
    name = tensor["name"]
    shape, kind = tensor.get("shape"), tensor.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValidationError(f"Input '{name}': shape must be a list of non-negative integers, not {shape!r}.")
    if not isinstance(kind, str) or kind not in DATATYPES:
        raise ValidationError(f"Input '{name}': datatype {kind!r} is not one of {', '.join(DATATYPES)}.")
    count = math.prod(shape)
    size = parameters(tensor, f"input '{name}'").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ValidationError(f"Input '{name}': binary_data_size {size!r} runs past the body.")
        chunk = binary[offset : offset + size]
        if kind == "BYTES":
            values: Any = _bytes_elements(chunk, name)
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            dtype = np.dtype(DATATYPES[kind]).newbyteorder("<")
            if size % dtype.itemsize:
                raise ValidationError(f"Input '{name}': {size} bytes is not a whole number of {kind} values.")
            array = np.frombuffer(chunk, dtype=dtype)
            if array.ctypes.data % dtype.alignment:
                # the tensor starts after a JSON header of any length: frameworks (XGBoost) refuse a
                # misaligned buffer, so an unaligned one is copied into aligned memory
                array = array.copy()
    else:
        if "data" not in tensor:
            raise ValidationError(f"Input '{name}' has no data.")
        try:
            array = _json_array(tensor["data"], kind, name)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise ValidationError(f"Input '{name}': its data is not {kind} values of one shape.") from exc
        size = 0
    if array.size != count:
        raise ValidationError(f"Input '{name}': shape {shape} holds {count} values, the data has {array.size}.")
    return name, array.reshape(shape), size


def parse_inputs(doc: Mapping[str, Any], binary: memoryview) -> dict[str, np.ndarray]:
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ValidationError('The inference request has no "inputs" list.')
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in tensors:
        name, array, used = _input(tensor, binary, offset)
        if name in inputs:
            raise ValidationError(f"Input '{name}' is given twice.")
        inputs[name] = array
        offset += used
    if offset != len(binary):
        raise ValidationError(f"The body has {len(binary) - offset} bytes of binary data no input claims.")
    return inputs


def requested_outputs(doc: Mapping[str, Any]) -> dict[str, bool]:
    """Requested output names, each with whether it goes back as binary data."""
    default = bool(parameters(doc, "the request").get("binary_data_output", False))
    wanted: dict[str, bool] = {}
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise ValidationError("The requested outputs must be a list.")
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise ValidationError("Every requested output must be an object with a name.")
        wanted[output["name"]] = bool(parameters(output, f"output '{output['name']}'").get("binary_data", default))
    return wanted


# -- response ------------------------------------------------------------------


def _output(name: str, value: Any, binary: bool) -> tuple[dict[str, Any], bytes]:
    array = np.asarray(value)
    items: list[bytes] = []
    if array.dtype.kind in "OSU":
        kind = "BYTES"
        items = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
    else:
        kind = _NAMES.get(array.dtype, "FP64")
        array = array.astype(DATATYPES[kind], copy=False)
    tensor: dict[str, Any] = {"name": name, "datatype": kind, "shape": list(array.shape)}
    if not binary:
        flat = array.reshape(-1)
        tensor["data"] = [v.decode("utf-8", "replace") for v in items] if kind == "BYTES" else codecs.plain(flat)
        return tensor, b""
    if kind == "BYTES":
        raw = b"".join(struct.pack("<I", len(v)) + v for v in items)
    else:
        raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


def encode_response(
    answer: dict[str, Any], results: Mapping[str, Any], binary: Mapping[str, bool], default: bool
) -> tuple[bytes, dict[str, str]]:
    """The response body for ``results`` (output name → array) and its extra headers.

    ``answer`` holds the other fields (``model_name``...); an output goes back as
    binary data when ``binary`` says so for it, else when ``default`` does.
    """
    tensors, blobs = [], []
    for name, value in results.items():
        as_binary = binary.get(name, default)
        tensor, raw = _output(name, value, as_binary)
        tensors.append(tensor)
        if as_binary:
            blobs.append(raw)
    header = json.dumps({**answer, "outputs": tensors}).encode()
    if not blobs:
        return header, {}
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}

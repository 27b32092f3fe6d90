"""Where an ONNX model's external data may come from: inside its own folder only.

A tensor of an ONNX model can keep its bytes in another file (``data_location:
EXTERNAL``, with ``location``, ``offset`` and ``length`` entries), which is how
models over protobuf's 2 GB limit are shipped. Handed to ONNX Runtime as bytes, as
modelyard did, ``location`` is resolved against the server's working directory: an
artifact could read any file there (a configuration with access keys, the control
plane's database) and return it as an output. The model is now loaded from its
path, so ONNX Runtime resolves against the artifact's folder and refuses absolute
paths and ``..`` itself (1.2x and later); this module checks the same before any
version of it reads the file: every location relative, staying inside the folder
once links are resolved, naming a file that holds ``offset + length`` bytes.

The protobuf is walked without the ``onnx`` package (not a runtime dependency): only
the messages that can hold a tensor are entered (graphs, nodes, attributes, sparse
tensors, functions, training graphs), everything else is skipped by its length.
Nesting deeper than protobuf's own limit (100) is refused, malformed encoding too.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from modelyard.handlers.structure import StructureError

__all__ = ["check_external_data"]

_MAX_DEPTH = 100  # protobuf's default recursion limit, which ONNX Runtime keeps
# message -> {field number: message it holds}, for the fields that can lead to a tensor
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _TENSOR, _SPARSE, _FUNCTION, _TRAINING, _ENTRY = range(9)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _TENSOR: {13: _ENTRY},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _ENTRY: {},
}


def check_external_data(data: bytes, folder: Path) -> None:
    """Raise StructureError unless every external data file of the model ``data`` lies in ``folder``."""
    tensors: list[list[list[bytes]]] = []
    _walk(data, 0, len(data), _MODEL, 0, tensors)
    root = folder.resolve()
    for entries in tensors:
        if entries:
            _check_entry(_entries(entries), root)


def _varint(data: bytes, at: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= end or shift > 63:
            raise StructureError("it is not a valid ONNX protobuf (a number runs past its message)")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _walk(data: bytes, at: int, end: int, kind: int, depth: int, tensors: list[list[list[bytes]]]) -> None:
    """Visit the message in ``data[at:end]``, collecting each tensor's external data entries (key, value)."""
    if depth > _MAX_DEPTH:
        raise StructureError(f"its messages nest deeper than {_MAX_DEPTH} levels")
    children = _CHILDREN[kind]
    if kind == _TENSOR:
        tensors.append([])
    elif kind == _ENTRY:
        tensors[-1].append([b"", b""])
    while at < end:
        key, at = _varint(data, at, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(data, at, end)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(data, at, end)
            if size > end - at:
                raise StructureError("it is not a valid ONNX protobuf (a field claims more bytes than it has)")
            if kind == _ENTRY and number in (1, 2):
                tensors[-1][-1][number - 1] = data[at : at + size]
            elif number in children:
                _walk(data, at, at + size, children[number], depth + 1, tensors)
            at += size
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise StructureError(f"it is not a valid ONNX protobuf (wire type {wire})")
        if at > end:
            raise StructureError("it is not a valid ONNX protobuf (a field runs past its message)")


def _entries(pairs: list[list[bytes]]) -> dict[str, str]:
    """One tensor's external data entries; a key given twice could mean two things."""
    out: dict[str, str] = {}
    for key, value in pairs:
        try:
            name, text = key.decode(), value.decode()
        except UnicodeDecodeError:
            raise StructureError("an external data entry is not UTF-8") from None
        if name in out:
            raise StructureError(f"a tensor names its external data {name!r} twice")
        out[name] = text
    return out


def _check_entry(entry: dict[str, str], root: Path) -> None:
    location = entry.get("location", "")
    relative = PurePosixPath(location)
    if not location or relative.is_absolute() or ".." in relative.parts or "\\" in location or "\0" in location:
        raise StructureError(f"external data {location!r} is not a path inside the artifact's folder")
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise StructureError(f"external data {location!r} is not a file inside the artifact's folder")
    numbers = []
    for key in ("offset", "length"):
        text = entry.get(key, "0")
        if not text.isdigit():
            raise StructureError(f"external data {location!r} has {key} {text!r}")
        numbers.append(int(text))
    offset, length = numbers
    if offset + length > path.stat().st_size:
        raise StructureError(f"external data {location!r} is shorter than offset {offset} + length {length}")

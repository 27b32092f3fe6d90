"""What a LightGBM text model must satisfy before LightGBM may load it.

LightGBM (4.x) trusts its text format. Fuzzing it in subprocesses (see
``docs/frameworks.md``, "Hostile artifacts") found:

* ``tree_sizes`` makes LightGBM cut the trees out by byte offsets and parse them on
  OpenMP threads, where any format error aborts the process instead of raising.
  Every edit that changes a tree's length does it, and so does a model checked out
  with Windows line endings. The line is dropped here: trees are then parsed one
  after the other, and their errors raise.
* arrays read without a length check (``left_child``, ``split_feature``...): a short
  one is padded with zeros, turning a child into node 0, a cycle walked forever;
* a child or split feature outside the tree or the model, a categorical threshold
  outside ``cat_boundaries``: read out of bounds at the first prediction;
* ``num_tree_per_iteration`` of 0 (a division by zero), an objective whose
  ``num_class`` differs from the model's (it writes past the output);
* a tree line without ``=`` or a tree not followed by an empty line: the parser
  scans past the end of the text; a training parameter line not ``[name: value]``:
  it is split at ``:`` and both halves read unchecked.

The text handed to LightGBM is rebuilt from the lines read here, with ``\\n`` line
endings, so both see the same lines. The checks run over all trees at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from modelyard.handlers.structure import StructureError
from modelyard.handlers.structure.values import text_integers
from modelyard.handlers.xgboost_checks import MAX_FEATURES

__all__ = ["prepare_model_text"]

_INT = re.compile(rb"-?[0-9]{1,10}")
_PARAMETER = re.compile(rb"\[[^:\]]+:.*\]")  # [name: value], what LightGBM writes and reads back
_TREE_LINES = 22  # LightGBM reads at most this many lines of one tree
_CATEGORICAL = 1  # decision_type bit
_NODE_ARRAYS = (b"left_child", b"right_child", b"split_feature", b"decision_type")


@dataclass
class _Forest:
    """Every tree's fields, gathered for checks over all trees at once."""

    leaves: list[int] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)
    arrays: dict[bytes, list[bytes]] = field(default_factory=dict)
    thresholds: list[bytes] = field(default_factory=list)
    linear: list[tuple[int, dict[bytes, bytes]]] = field(default_factory=list)  # leaves, fields


def _show(value: bytes | None) -> str:
    return repr(value.decode("utf-8", "replace")[:40]) if value is not None else "missing"


def prepare_model_text(data: bytes) -> str:
    """The model text to hand to LightGBM, or StructureError (see module doc)."""
    if b"\0" in data:
        raise StructureError("it holds a NUL byte")
    if b"\r" in data:  # LightGBM ends a line at \r\n, \r or \n
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")  # bytes, not str: counting values in bytes is several times faster
    header, at = _header(lines)
    num_class = _int(header, b"num_class", 1, 1 << 20)
    per_iteration = _int(header, b"num_tree_per_iteration", 1, 1 << 20, default=num_class)
    if per_iteration != num_class:
        raise StructureError(f"num_tree_per_iteration is {per_iteration}, num_class {num_class}")
    features = _int(header, b"max_feature_idx", 0, MAX_FEATURES - 1) + 1
    for token in header.get(b"objective", b"").split(b" ")[1:]:
        if token.startswith(b"num_class:") and token != b"num_class:%d" % num_class:
            raise StructureError(f"the objective's {token.decode()} differs from the model's num_class {num_class}")
    forest, after = _trees(lines, at)
    _check_parameters(lines, after)
    if num_class > max(1, len(forest.leaves)):
        raise StructureError(f"the model claims {num_class} classes for {len(forest.leaves)} trees")
    _check_forest(forest, features)
    kept = [line for line in lines[:at] if line.partition(b"=")[0] != b"tree_sizes"]
    try:
        return b"\n".join(kept + lines[at:]).decode()
    except UnicodeDecodeError as exc:
        raise StructureError(f"it is not UTF-8 text ({exc.reason})") from None


def _header(lines: list[bytes]) -> tuple[dict[bytes, bytes], int]:
    """The key=value lines before the first tree (the last of equal keys wins, as in LightGBM)."""
    header: dict[bytes, bytes] = {}
    for at, line in enumerate(lines):
        if line.startswith(b"Tree="):
            return header, at
        if line:
            key, _, value = line.partition(b"=")
            header[key] = value
    return header, len(lines)


def _int(values: dict[bytes, bytes], key: bytes, low: int, high: int, default: int | None = None) -> int:
    value = values.get(key)
    if value is None and default is not None:
        return default
    if value is None or not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise StructureError(f"{key.decode()} is {_show(value)}, not an integer from {low} to {high}")
    return int(value)


def _trees(lines: list[bytes], at: int) -> tuple[_Forest, int]:
    """Read the trees as LightGBM does without tree_sizes; returns them and the line after."""
    forest = _Forest()
    while at < len(lines):
        if not lines[at]:
            at += 1
            continue
        if not lines[at].startswith(b"Tree="):
            break
        tree: dict[bytes, bytes] = {}
        at += 1
        read = 0
        while read < _TREE_LINES:
            # LightGBM stops at a line end or reads on, past the end of the text when it ends here
            if at >= len(lines) - 1:
                raise StructureError(f"tree {len(forest.leaves)} is not followed by an empty line")
            line = lines[at]
            if not line:
                break
            key, equals, value = line.partition(b"=")
            if not equals:  # LightGBM scans for '=' across lines and past the end
                raise StructureError(f"tree {len(forest.leaves)} has a line without '=': {_show(line)}")
            tree[key] = value
            at += 1
            read += 1
        _read_tree(tree, forest)
    return forest, at


def _check_parameters(lines: list[bytes], at: int) -> None:
    """The training parameters after the trees: LightGBM splits each at ':' and indexes the halves unchecked."""
    inside = False
    for line in lines[at:]:
        if line == b"parameters:":
            inside = True
        elif line == b"end of parameters":
            return
        elif inside and line and not _PARAMETER.fullmatch(line):
            raise StructureError(f"the parameter line {_show(line)} is not [name: value]")


def _read_tree(tree: dict[bytes, bytes], forest: _Forest) -> None:
    index = len(forest.leaves)
    leaves = _int(tree, b"num_leaves", 1, 1 << 30)
    categories = _int(tree, b"num_cat", 0, 1 << 30)
    linear = _int(tree, b"is_linear", -(1 << 31), (1 << 31) - 1, default=0) != 0
    nodes = leaves - 1
    expected = {b"leaf_value": leaves, b"leaf_weight": leaves, b"leaf_count": leaves}
    if nodes or linear:
        expected |= dict.fromkeys((b"left_child", b"right_child", b"split_feature", b"threshold"), nodes)
        expected |= dict.fromkeys(
            (b"decision_type", b"split_gain", b"internal_value", b"internal_weight", b"internal_count"), nodes
        )
    for name, count in expected.items():
        value = tree.get(name)
        if value is None:
            if name in (b"leaf_value", b"left_child", b"right_child", b"split_feature", b"threshold"):
                raise StructureError(f"tree {index} has no {name.decode()}")
            continue
        if _count(value) != count:
            raise StructureError(f"tree {index}: {name.decode()} has {_count(value)} values, {count} expected")
    forest.leaves.append(leaves)
    forest.categories.append(categories)
    if nodes or linear:
        defaults = {b"decision_type": b"0 " * nodes}
        for name in _NODE_ARRAYS:
            forest.arrays.setdefault(name, []).append(tree.get(name, defaults.get(name, b"")))
        forest.thresholds.append(tree[b"threshold"])
    if categories:
        boundaries = _ints(tree.get(b"cat_boundaries", b""), f"tree {index}: cat_boundaries")
        if len(boundaries) != categories + 1 or boundaries[0] != 0 or (np.diff(boundaries) < 0).any():
            raise StructureError(f"tree {index}: cat_boundaries do not split cat_threshold into {categories} sets")
        if _count(tree.get(b"cat_threshold", b"")) != boundaries[-1]:
            raise StructureError(f"tree {index}: cat_threshold does not have {boundaries[-1]} values")
    if linear:
        forest.linear.append(
            (leaves, {k: tree.get(k, b"") for k in (b"num_features", b"leaf_features", b"leaf_coeff")})
        )


def _count(value: bytes) -> int:
    """How many values, as LightGBM writes them: one space apart.

    Odd spacing over-counts, which is safe: arrays whose values matter are parsed
    (:func:`_ints`), and a stray space there is refused; the others LightGBM either
    counts itself or zero-fills, and a count is never larger than the text.
    """
    return value.count(b" ") + 1 if value else 0


def _tokens(value: bytes) -> list[bytes]:
    # LightGBM splits arrays at spaces, and spaces only, skipping empty tokens
    return [token for token in value.split(b" ") if token]


def _ints(text: bytes, what: str, *, spaced: bool = False) -> np.ndarray:
    """Integers one space apart (``spaced``: any number of spaces, as linear trees' arrays are written)."""
    if spaced:
        tokens = _tokens(text)
        joined, count = b",".join(tokens), len(tokens)
    else:
        joined, count = text.replace(b" ", b","), _count(text)
    if not count:
        return np.zeros(0, dtype=np.int64)
    values = text_integers(joined)
    if len(values) != count:
        raise StructureError(f"{what} holds something other than integers")
    return values


def _floats(text: bytes, what: str) -> np.ndarray:
    joined, count = text.replace(b" ", b","), _count(text)
    try:
        values = np.fromstring(joined, dtype=np.float64, sep=",") if count else np.zeros(0)
    except (ValueError, DeprecationWarning):  # DeprecationWarning: when warnings are errors
        values = np.zeros(0)
    if len(values) != count:
        raise StructureError(f"{what} holds something other than numbers")
    return values


def _check_forest(forest: _Forest, features: int) -> None:
    for index, (leaves, linear) in enumerate(forest.linear):
        counts = _ints(linear[b"num_features"], f"linear tree {index}: num_features", spaced=True)
        used = _ints(linear[b"leaf_features"], f"linear tree {index}: leaf_features", spaced=True)
        if len(counts) != leaves or (counts < 0).any() or int(counts.sum()) != len(used):
            raise StructureError(f"linear tree {index}: num_features do not match leaf_features")
        if (used < 0).any() or (used >= features).any() or len(_tokens(linear[b"leaf_coeff"])) != len(used):
            raise StructureError(f"linear tree {index}: a leaf uses a feature the model does not have")
    nodes = np.array(forest.leaves, dtype=np.int64) - 1
    if not nodes.any():
        return
    left, right, splits, kinds = (
        _ints(b" ".join(t for t in forest.arrays[name] if t), name.decode()) for name in _NODE_ARRAYS
    )
    ends = np.cumsum(nodes)
    base = np.repeat(ends - nodes, nodes)
    local = np.arange(int(ends[-1])) - base
    size = np.repeat(nodes, nodes)

    def fail(node: int, message: str) -> StructureError:
        tree = int(np.searchsorted(ends, node, side="right"))
        return StructureError(f"tree {tree}, node {local[node]}: {message}")

    for name, child in (("left_child", left), ("right_child", right)):
        # an internal child comes after its parent (LightGBM numbers nodes as it splits); a leaf is ~index
        bad = np.flatnonzero(np.where(child >= 0, (child <= local) | (child >= size), ~child >= size + 1))
        if len(bad):
            raise fail(int(bad[0]), f"{name} {child[bad[0]]} is neither a later node nor a leaf of the tree")
    bad = np.flatnonzero((splits < 0) | (splits >= features))
    if len(bad):
        raise fail(int(bad[0]), f"it splits on feature {splits[bad[0]]}; the model has {features}")
    if (kinds < -128).any() or (kinds > 127).any():
        raise StructureError("a decision_type is not an 8-bit value")
    categorical = (kinds & _CATEGORICAL) != 0
    if categorical.any():
        thresholds = _floats(b" ".join(t for t in forest.thresholds if t), "threshold")
        sets = np.repeat(np.array(forest.categories, dtype=np.int64), nodes)[categorical]
        chosen = thresholds[categorical]
        bad = np.flatnonzero(~((chosen >= 0) & (chosen < sets) & (chosen == np.trunc(chosen))))
        if len(bad):
            raise fail(
                int(np.flatnonzero(categorical)[bad[0]]),
                "its categorical threshold is not one of the tree's category sets",
            )

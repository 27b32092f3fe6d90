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

_LINE_END = re.compile(r"\r\n|\r|\n")  # LightGBM's GetLine and SkipNewLine
_INT = re.compile(r"-?[0-9]{1,10}")
_PARAMETER = re.compile(r"\[[^:\]]+:.*\]")  # [name: value], what LightGBM writes and reads back
_TREE_LINES = 22  # LightGBM reads at most this many lines of one tree
_CATEGORICAL = 1  # decision_type bit


@dataclass
class _Forest:
    """Every tree's fields, gathered for checks over all trees at once."""

    leaves: list[int] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)
    texts: dict[str, list[str]] = field(default_factory=dict)
    thresholds: list[str] = field(default_factory=list)
    linear: list[dict[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.texts.setdefault(name, []).append(value)


def prepare_model_text(data: bytes) -> str:
    """The model text to hand to LightGBM, or StructureError (see module doc)."""
    if b"\0" in data:
        raise StructureError("it holds a NUL byte")
    try:
        lines = _LINE_END.split(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise StructureError(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    header, at = _header(lines)
    num_class = _int(header, "num_class", 1, 1 << 20)
    per_iteration = _int(header, "num_tree_per_iteration", 1, 1 << 20, default=num_class)
    if per_iteration != num_class:
        raise StructureError(f"num_tree_per_iteration is {per_iteration}, num_class {num_class}")
    features = _int(header, "max_feature_idx", 0, MAX_FEATURES - 1) + 1
    for token in header.get("objective", "").split(" ")[1:]:
        if token.startswith("num_class:") and token != f"num_class:{num_class}":
            raise StructureError(f"the objective's {token} differs from the model's num_class {num_class}")
    forest, after = _trees(lines, at)
    _check_parameters(lines, after)
    if num_class > max(1, len(forest.leaves)):
        raise StructureError(f"the model claims {num_class} classes for {len(forest.leaves)} trees")
    _check_forest(forest, features)
    kept = [line for line in lines[:at] if line.partition("=")[0] != "tree_sizes"]
    return "\n".join(kept + lines[at:])


def _header(lines: list[str]) -> tuple[dict[str, str], int]:
    """The key=value lines before the first tree (the last of equal keys wins, as in LightGBM)."""
    header: dict[str, str] = {}
    for at, line in enumerate(lines):
        if line.startswith("Tree="):
            return header, at
        if line:
            key, _, value = line.partition("=")
            header[key] = value
    return header, len(lines)


def _int(values: dict[str, str], key: str, low: int, high: int, default: int | None = None) -> int:
    value = values.get(key)
    if value is None and default is not None:
        return default
    if value is None or not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise StructureError(f"{key} is {value!r}, not an integer from {low} to {high}")
    return int(value)


def _trees(lines: list[str], at: int) -> tuple[_Forest, int]:
    """Read the trees as LightGBM does without tree_sizes; returns them and the line after."""
    forest = _Forest()
    while at < len(lines):
        if not lines[at]:
            at += 1
            continue
        if not lines[at].startswith("Tree="):
            break
        tree: dict[str, str] = {}
        at += 1
        read = 0
        while read < _TREE_LINES:
            # LightGBM stops at a line end or reads on, past the end of the text when it ends here
            if at >= len(lines) - 1:
                raise StructureError(f"tree {len(forest.leaves)} is not followed by an empty line")
            line = lines[at]
            if not line:
                break
            if "=" not in line:  # LightGBM scans for '=' across lines and past the end
                raise StructureError(f"tree {len(forest.leaves)} has a line without '=': {line[:40]!r}")
            key, _, value = line.partition("=")
            tree[key] = value
            at += 1
            read += 1
        _read_tree(tree, forest)
    return forest, at


def _check_parameters(lines: list[str], at: int) -> None:
    """The training parameters after the trees: LightGBM splits each at ':' and indexes the halves unchecked."""
    inside = False
    for line in lines[at:]:
        if line == "parameters:":
            inside = True
        elif line == "end of parameters":
            return
        elif inside and line and not _PARAMETER.fullmatch(line):
            raise StructureError(f"the parameter line {line[:40]!r} is not [name: value]")


def _read_tree(tree: dict[str, str], forest: _Forest) -> None:
    index = len(forest.leaves)
    leaves = _int(tree, "num_leaves", 1, 1 << 30)
    categories = _int(tree, "num_cat", 0, 1 << 30)
    linear = _int(tree, "is_linear", -(1 << 31), (1 << 31) - 1, default=0) != 0
    nodes = leaves - 1
    expected = {"leaf_value": leaves, "leaf_weight": leaves, "leaf_count": leaves}
    if nodes or linear:
        expected |= dict.fromkeys(("left_child", "right_child", "split_feature", "threshold"), nodes)
        expected |= dict.fromkeys(
            ("decision_type", "split_gain", "internal_value", "internal_weight", "internal_count"), nodes
        )
    for name, count in expected.items():
        value = tree.get(name)
        if value is None:
            if name in ("leaf_value", "left_child", "right_child", "split_feature", "threshold"):
                raise StructureError(f"tree {index} has no {name}")
            continue
        if _count(value) != count:
            raise StructureError(f"tree {index}: {name} has {_count(value)} values, {count} expected")
    forest.leaves.append(leaves)
    forest.categories.append(categories)
    if nodes or linear:
        for name in ("left_child", "right_child", "split_feature"):
            forest.add(name, tree[name])
        forest.add("decision_type", tree.get("decision_type", "0 " * nodes))
        forest.thresholds.append(tree["threshold"])
    else:
        for name in ("left_child", "right_child", "split_feature", "decision_type"):
            forest.add(name, "")
        forest.thresholds.append("")
    if categories:
        boundaries = _ints(tree.get("cat_boundaries", ""), f"tree {index}: cat_boundaries")
        if len(boundaries) != categories + 1 or boundaries[0] != 0 or (np.diff(boundaries) < 0).any():
            raise StructureError(f"tree {index}: cat_boundaries do not split cat_threshold into {categories} sets")
        if _count(tree.get("cat_threshold", "")) != boundaries[-1]:
            raise StructureError(f"tree {index}: cat_threshold does not have {boundaries[-1]} values")
    if linear:
        forest.linear.append(
            {k: tree.get(k, "") for k in ("num_features", "leaf_features", "leaf_coeff")} | {"n": str(leaves)}
        )


def _tokens(value: str) -> list[str]:
    # LightGBM splits arrays at spaces, and spaces only, skipping empty tokens
    return [token for token in value.split(" ") if token]


def _count(value: str) -> int:
    return len(_tokens(value))


def _ints(text: str, what: str) -> np.ndarray:
    tokens = _tokens(text)
    if not tokens:
        return np.zeros(0, dtype=np.int64)
    values = text_integers(",".join(tokens).encode())
    if len(values) != len(tokens):
        raise StructureError(f"{what} holds something other than integers")
    return values


def _floats(text: str, what: str) -> np.ndarray:
    tokens = _tokens(text)
    try:
        values = np.fromstring(",".join(tokens), dtype=np.float64, sep=",") if tokens else np.zeros(0)
    except (ValueError, DeprecationWarning):  # DeprecationWarning: when warnings are errors
        values = np.zeros(0)
    if len(values) != len(tokens):
        raise StructureError(f"{what} holds something other than numbers")
    return values


def _check_forest(forest: _Forest, features: int) -> None:
    for index, linear in enumerate(forest.linear):
        counts = _ints(linear["num_features"], f"linear tree {index}: num_features")
        used = _ints(linear["leaf_features"], f"linear tree {index}: leaf_features")
        if len(counts) != int(linear["n"]) or (counts < 0).any() or int(counts.sum()) != len(used):
            raise StructureError(f"linear tree {index}: num_features do not match leaf_features")
        if (used < 0).any() or (used >= features).any() or _count(linear["leaf_coeff"]) != len(used):
            raise StructureError(f"linear tree {index}: a leaf uses a feature the model does not have")
    nodes = np.array(forest.leaves, dtype=np.int64) - 1
    if not nodes.any():
        return
    names = ("left_child", "right_child", "split_feature", "decision_type")
    left, right, splits, kinds = (_ints(" ".join(forest.texts[name]), name) for name in names)
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
        thresholds = _floats(" ".join(forest.thresholds), "threshold")
        sets = np.repeat(np.array(forest.categories, dtype=np.int64), nodes)[categorical]
        chosen = thresholds[categorical]
        bad = np.flatnonzero(~((chosen >= 0) & (chosen < sets) & (chosen == np.trunc(chosen))))
        if len(bad):
            raise fail(
                int(np.flatnonzero(categorical)[bad[0]]),
                "its categorical threshold is not one of the tree's category sets",
            )

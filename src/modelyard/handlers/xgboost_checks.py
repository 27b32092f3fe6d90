"""What an XGBoost model must satisfy before XGBoost may load it.

XGBoost's loader (3.2) trusts the model it reads. Fuzzing it in subprocesses (see
``docs/frameworks.md``, "Hostile artifacts") found these kill the process, on load
or on the first prediction, where a clear error was wanted:

* a child index outside its tree, a node that is the child of two others (a cycle),
  a parent index outside the tree;
* a split on a feature the model does not have;
* a tree's ``id`` other than its position, a ``tree_info`` group the model does not
  have, ``size_leaf_vector`` not matching the tree's arrays;
* categorical splits: node lists out of order, segments outside ``categories``, a
  category that is negative or past 2^24, a categorical split type on a node that
  lists no categories;
* vector-leaf trees: leaf indices outside ``leaf_weights``;
* a ``gblinear`` model without its weights; output groups in the hundreds of millions.

Each rule below is what XGBoost itself writes. The checks run over all trees at once
(NumPy over the concatenated node arrays), so a model of thousands of trees costs a
handful of array operations. A failure raises
:class:`~modelyard.handlers.structure.StructureError` naming the tree and node.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from modelyard.handlers.structure import NumberArray, StructureError, Table
from modelyard.handlers.xgboost_trees import Trees

__all__ = ["MAX_FEATURES", "check_model"]

#: widest model accepted: a request row is decoded into this many float32 values
MAX_FEATURES = 1 << 24
#: XGBoost's categories are below 2^24 (``OutOfRangeCat``)
_MAX_CATEGORY = 1 << 24
#: categorical splits are bitfields as wide as the largest category: bounded next to the file
_CATEGORY_BYTES_FLOOR = 256 << 20
_CATEGORY_BYTES_PER_FILE_BYTE = 16
_PARAM = re.compile(r"-?[0-9]{1,19}")
_ROOT_PARENTS = (-1, 2**31 - 1)  # what XGBoost writes for the root: kInvalidNodeId, or it masked to 31 bits


def check_model(document: Any, *, file_size: int) -> None:
    """Raise StructureError unless ``document`` (a parsed model) is safe to hand to XGBoost."""
    learner = _object(_object({"": document}, "", "the model"), "learner", "the model")
    params = _object(learner, "learner_model_param", "learner")
    num_feature = _param(params, "num_feature", "learner_model_param", 1, MAX_FEATURES)
    num_class = _param(params, "num_class", "learner_model_param", 0, 2**31 - 1)
    num_target = _param(params, "num_target", "learner_model_param", 1, 2**31 - 1, default=1)
    for key in ("objective", "attributes"):
        _object(learner, key, "learner")
    booster = _object(learner, "gradient_booster", "learner")
    name = booster.get("name")
    outputs = max(num_class, num_target, 1)
    if name == "gblinear":
        _check_linear(_object(booster, "model", "gradient_booster"), num_feature, outputs)
        return
    if name == "dart":
        model = _object(_object(booster, "gbtree", "gradient_booster"), "model", "gradient_booster.gbtree")
    elif name == "gbtree":
        model = _object(booster, "model", "gradient_booster")
    else:
        raise StructureError(f"gradient_booster.name is {name!r}, not gbtree, dart or gblinear")
    trees = _check_forest(model, num_feature, num_target, outputs, file_size)
    if name == "dart":
        drops = booster.get("weight_drop")
        if not isinstance(drops, NumberArray | list) or len(drops) != trees:
            raise StructureError(f"a dart model needs one weight_drop per tree ({trees})")


def _object(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise StructureError(f"{where} has no {key!r} object")
    return value


def _param(parent: dict[str, Any], key: str, where: str, low: int, high: int, default: int | None = None) -> int:
    """A parameter: XGBoost writes them as strings of digits."""
    if key not in parent and default is not None:
        return default
    value = parent.get(key)
    if not isinstance(value, str) or not _PARAM.fullmatch(value) or not low <= int(value) <= high:
        raise StructureError(f"{where}.{key} is {value!r}, not an integer from {low} to {high}")
    return int(value)


def _check_linear(model: dict[str, Any], num_feature: int, outputs: int) -> None:
    weights = model.get("weights")
    expected = (num_feature + 1) * outputs
    if not isinstance(weights, NumberArray | list) or len(weights) != expected:
        raise StructureError(f"a gblinear model needs {expected} weights ((features + 1) x outputs)")


def _check_forest(model: dict[str, Any], num_feature: int, num_target: int, outputs: int, file_size: int) -> int:
    """Check a gbtree model's trees and bookkeeping; returns the number of trees."""
    tree_list = model.get("trees")
    if not isinstance(tree_list, list | Table):
        raise StructureError("the model has no list of trees")
    count = len(tree_list)
    forest = _param(_object(model, "gbtree_model_param", "model"), "num_trees", "gbtree_model_param", 0, 2**31 - 1)
    # an older model may have no num_parallel_tree: XGBoost reads 1
    _param(model["gbtree_model_param"], "num_parallel_tree", "gbtree_model_param", 1, 2**31 - 1, default=1)
    if forest != count:
        raise StructureError(f"gbtree_model_param.num_trees is {forest}, the model holds {count} trees")
    info = _integers(model, "tree_info", "model")
    if len(info) != count:
        raise StructureError(f"tree_info has {len(info)} entries for {count} trees")
    if "iteration_indptr" in model:
        indptr = _integers(model, "iteration_indptr", "model")
        if not len(indptr) or indptr[0] != 0 or indptr[-1] != count or (np.diff(indptr) < 0).any():
            raise StructureError("iteration_indptr does not split the trees into rounds")
    if not count:
        return 0
    trees = Trees.of(tree_list)
    widest = max(1, int(trees.leaf_sizes.max()))
    if outputs > count * widest:
        raise StructureError(f"the model claims {outputs} outputs for {count} trees")
    bad = np.flatnonzero((info < 0) | (info >= outputs))
    if len(bad):
        raise StructureError(f"tree {bad[0]} is in output group {info[bad[0]]}; the model has {outputs}")
    bad = np.flatnonzero(trees.ids != np.arange(count))
    if len(bad):
        raise StructureError(f"tree {bad[0]} has id {trees.ids[bad[0]]}")
    vector = trees.leaf_sizes > 1
    bad = np.flatnonzero(vector & (trees.leaf_sizes != num_target))
    if len(bad):
        raise StructureError(f"tree {bad[0]} has leaves of {trees.leaf_sizes[bad[0]]} values, for {num_target} targets")
    _check_nodes(trees, num_feature)
    _check_categories(trees, file_size)
    return count


def _integers(parent: dict[str, Any], key: str, where: str) -> np.ndarray:
    value = parent.get(key)
    if not isinstance(value, NumberArray | list):
        raise StructureError(f"{where} has no {key!r} array")
    try:
        return value.integers() if isinstance(value, NumberArray) else np.array(_ints(value, key), dtype=np.int64)
    except StructureError as exc:
        raise StructureError(f"{key}: {exc}") from None


def _ints(items: list[Any], what: str) -> list[int]:
    if not all(type(v) is int for v in items):
        raise StructureError(f"{what} holds something other than integers")
    return items


def _fail(trees: Trees, node: int, message: str) -> StructureError:
    tree = int(np.searchsorted(trees.offsets, node, side="right")) - 1
    return StructureError(f"tree {tree}, node {node - int(trees.offsets[tree])}: {message}")


def _check_nodes(trees: Trees, num_feature: int) -> None:
    """Children, parents and split features of every node of every tree, at once.

    The arrays are millions long in a big model: each check is one or two passes.
    """
    left, right, parents, splits = trees.left, trees.right, trees.parents, trees.splits
    local, size = trees.local, trees.node_counts
    internal = left != -1
    # XGBoost numbers children after their parent: then every walk ends and no more is needed
    after = (local < left) & (left < size) & (local < right) & (right < size)
    if not (after | ~internal).all():
        _check_children(trees, internal)
    # a leaf's right is -1, or in a vector-leaf tree the index of its values in leaf_weights
    vector = trees.leaf_sizes > 1
    leaves = ~internal
    if not vector.any():
        bad = np.flatnonzero(leaves & (right != -1))
    else:
        slots, is_vector = trees.by_node(trees.leaf_slots), trees.by_node(vector)
        bad = np.flatnonzero(leaves & np.where(is_vector, (right < 0) | (right >= slots), right != -1))
    if len(bad):
        raise _fail(trees, int(bad[0]), f"the leaf's right child is {right[bad[0]]}")
    root = local == 0
    bad = np.flatnonzero(~root & (parents.view(np.uint32) >= size.view(np.uint32)))  # negatives are huge unsigned
    if len(bad):
        raise _fail(trees, int(bad[0]), f"parent {parents[bad[0]]} is not a node of the tree")
    bad = np.flatnonzero(root & (parents != -1) & (parents != 2**31 - 1))
    if len(bad):
        raise _fail(trees, int(bad[0]), f"the root has parent {parents[bad[0]]}")
    bad = np.flatnonzero(internal & (splits.view(np.uint32) >= num_feature))
    if len(bad):
        raise _fail(trees, int(bad[0]), f"it splits on feature {splits[bad[0]]}; the model has {num_feature}")


def _check_children(trees: Trees, internal: np.ndarray) -> None:
    """The slow path: children in the tree, none shared, none the root (so walks still end)."""
    size, base = trees.node_counts, trees.base
    for name, child in (("left", trees.left), ("right", trees.right)):
        bad = np.flatnonzero(internal & ((child < 1) | (child >= size)))
        if len(bad):
            raise _fail(trees, int(bad[0]), f"{name} child {child[bad[0]]} is not a node of the tree")
    # every node the child of one node at most and the root of none: a walk cannot come back
    children = np.concatenate([(base + trees.left)[internal], (base + trees.right)[internal]])
    shared = np.flatnonzero(np.bincount(children, minlength=len(size)) > 1)
    if len(shared):
        raise _fail(trees, int(shared[0]), "it is the child of two nodes")


def _check_categories(trees: Trees, file_size: int) -> None:
    """Categorical splits: node lists, segments into ``categories``, category values."""
    kinds = trees.split_types
    bad = np.flatnonzero((kinds != 0) & (kinds != 1))
    if len(bad):
        raise _fail(trees, int(bad[0]), f"split type {kinds[bad[0]]} is neither numerical (0) nor categorical (1)")
    nodes, segments, sizes, categories = trees.categories
    listed = np.zeros(len(kinds), dtype=np.bool_)
    if len(nodes.values):
        tree_of = np.repeat(np.arange(len(nodes.lengths)), nodes.lengths)
        node_count = trees.node_counts_by_tree[tree_of]
        if (nodes.values < 0).any() or (nodes.values >= node_count).any():
            raise StructureError("categories_nodes lists a node outside its tree")
        same_tree = tree_of[1:] == tree_of[:-1]
        if (same_tree & (np.diff(nodes.values) <= 0)).any():
            raise StructureError("categories_nodes is not in increasing order")
        if not (np.array_equal(segments.lengths, nodes.lengths) and np.array_equal(sizes.lengths, nodes.lengths)):
            raise StructureError("categories_segments and categories_sizes do not have one entry per categorical node")
        available = np.repeat(categories.lengths, nodes.lengths)
        if (
            (sizes.values < 1).any()
            or (segments.values < 0).any()
            or (segments.values + sizes.values > available).any()
        ):
            raise StructureError("a categorical split's segment is outside its tree's categories")
        listed[trees.offsets[tree_of] + nodes.values] = True
    if len(categories.values) and ((categories.values < 0) | (categories.values >= _MAX_CATEGORY)).any():
        raise StructureError(f"a category is negative or not below {_MAX_CATEGORY}")
    bad = np.flatnonzero(listed != (kinds == 1))
    if len(bad):
        raise _fail(trees, int(bad[0]), "its split type and the categories_nodes list disagree")
    if len(nodes.values):
        # XGBoost keeps one bitfield per categorical node, as wide as the tree's largest category
        largest = np.zeros(len(categories.lengths), dtype=np.int64)
        with_categories = np.flatnonzero(categories.lengths)
        starts = np.concatenate([[0], np.cumsum(categories.lengths)[:-1]])[with_categories]
        largest[with_categories] = np.maximum.reduceat(categories.values, starts)
        bitfields = int((nodes.lengths * (largest // 32 + 1) * 4).sum())
        limit = max(_CATEGORY_BYTES_FLOOR, _CATEGORY_BYTES_PER_FILE_BYTE * file_size)
        if bitfields > limit:
            raise StructureError(
                f"its categorical splits would take {bitfields >> 20} MiB for a {file_size >> 10} KiB file"
            )

"""XGBoost models are checked before XGBoost loads them: real ones pass, each crasher found is refused.

The edits below come from fuzzing XGBoost 3.2 in subprocesses (bench/fuzz_loaders.py).
Those marked ``# kills`` killed the process (a segfault, an abort, or a prediction
that never ended) on load or on the first prediction; the others XGBoost refuses
itself or reads out of bounds without dying, this time. None is loaded here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import ArtifactInvalid
from modelyard.handlers import Loader
from modelyard.handlers.structure import StructureError
from modelyard.handlers.xgboost import check_xgboost_model
from tests.handlers.hostile import Typed, as_json, ubj_encode, xgboost_document, xgboost_model

KINDS = ["regressor", "multiclass", "categorical", "dart", "linear", "multitarget", "forest", "many"]
Edit = Callable[[dict[str, Any]], None]


def items(value: Any) -> list[Any]:
    """The list inside a typed or plain array, to edit in place."""
    return value.values if isinstance(value, Typed) else value


def model(document: dict[str, Any]) -> dict[str, Any]:
    booster = document["learner"]["gradient_booster"]
    return booster["gbtree"]["model"] if "gbtree" in booster else booster["model"]  # type: ignore[no-any-return]


def tree(document: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return model(document)["trees"][index]  # type: ignore[no-any-return]


def params(document: dict[str, Any]) -> dict[str, Any]:
    return document["learner"]["learner_model_param"]  # type: ignore[no-any-return]


def categorical_node(document: dict[str, Any]) -> tuple[dict[str, Any], int]:
    first = next(t for t in model(document)["trees"] if items(t["categories_nodes"]))
    return first, items(first["categories_nodes"])[0]


def unlisted(t: dict[str, Any]) -> int:
    return next(i for i in range(len(items(t["split_type"]))) if i not in items(t["categories_nodes"]))


def leaf(t: dict[str, Any]) -> int:
    return items(t["left_children"]).index(-1)


def set_at(name: str, index: int, value: Any, which: int = 0) -> Edit:
    return lambda d: items(tree(d, which)[name]).__setitem__(index, value)


HOSTILE: list[tuple[str, str, Edit, str]] = [
    ("child outside the tree", "regressor", set_at("left_children", 0, 1000), "left child 1000 is not a node"),  # kills
    ("negative child", "regressor", set_at("right_children", 1, -5), "right child -5 is not a node"),  # kills
    ("a node its own child", "regressor", set_at("left_children", 1, 1), "child of two nodes"),  # kills
    ("parent outside the tree", "regressor", set_at("parents", 5, -1000), "parent -1000 is not a node"),  # kills
    ("root with a parent", "regressor", set_at("parents", 0, 5), "the root has parent 5"),
    (
        "split on a missing feature",  # kills
        "regressor",
        set_at("split_indices", 0, 2**31 - 1),
        "splits on feature 2147483647",
    ),
    (
        "leaf with a right child",
        "regressor",
        lambda d: set_at("right_children", leaf(tree(d)), 3)(d),
        "right child is 3",
    ),
    ("tree id not its place", "regressor", lambda d: tree(d, 1).__setitem__("id", 0), "tree 1 has id 0"),  # kills
    ("group the model lacks", "regressor", lambda d: items(model(d)["tree_info"]).__setitem__(0, 7), "output group 7"),
    (
        "tree count",
        "regressor",
        lambda d: model(d)["gbtree_model_param"].__setitem__("num_trees", "9"),
        "num_trees is 9, the model holds 10",
    ),
    (
        "leaf vector on a scalar tree",  # kills
        "regressor",
        lambda d: tree(d)["tree_param"].__setitem__("size_leaf_vector", "5"),
        "base_weights has 15 values, 75 expected",
    ),
    ("short array", "regressor", lambda d: items(tree(d)["left_children"]).pop(), "left_children has 14 values"),
    ("missing array", "regressor", lambda d: tree(d).pop("parents"), "no 'parents' array"),
    (
        "fractional child",
        "regressor",
        lambda d: tree(d).__setitem__("left_children", Typed("d", [1.5, *items(tree(d)["left_children"])[1:]])),
        "not an integer",
    ),
    ("huge feature count", "regressor", lambda d: params(d).__setitem__("num_feature", "2147483647"), "1 to 16777216"),
    (
        "outputs from nowhere",  # kills: a prediction that never ends
        "regressor",
        lambda d: params(d).__setitem__("num_target", "100000000"),
        "100000000 outputs",
    ),
    ("unknown booster", "regressor", lambda d: d["learner"]["gradient_booster"].__setitem__("name", "x"), "not gbtree"),
    (
        "categories out of order",  # kills
        "categorical",
        lambda d: model(d)["trees"][0].__setitem__("categories_nodes", Typed("l", [4, 3])),
        "categories_nodes",
    ),
    (
        "segment past the categories",  # kills
        "categorical",
        lambda d: items(categorical_node(d)[0]["categories_segments"]).__setitem__(0, 100),
        "segment is outside",
    ),
    (
        "negative category",  # kills
        "categorical",
        lambda d: items(categorical_node(d)[0]["categories"]).__setitem__(0, -1),
        "negative or not below 16777216",
    ),
    (
        "categorical type on an unlisted node",  # kills
        "categorical",
        lambda d: items(tree(d)["split_type"]).__setitem__(unlisted(tree(d)), 1),
        "split type and the categories_nodes list disagree",
    ),
    (
        "listed node split numerically",
        "categorical",
        lambda d: items(categorical_node(d)[0]["split_type"]).__setitem__(categorical_node(d)[1], 0),
        "disagree",
    ),
    (
        "vector leaf outside leaf_weights",  # kills
        "multitarget",
        lambda d: set_at("right_children", leaf(tree(d)), 1000)(d),
        "right child is 1000",
    ),
    (
        "partial leaf vector",
        "multitarget",
        lambda d: items(tree(d)["leaf_weights"]).pop(),
        "do not hold whole leaves",
    ),
    ("gblinear without weights", "linear", lambda d: model(d).pop("weights"), "needs 7 weights"),  # kills
    (
        "dart without drops",
        "dart",
        lambda d: items(d["learner"]["gradient_booster"]["weight_drop"]).pop(),
        "one weight_drop per tree",
    ),
]


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("kind", KINDS)
def test_real_models_pass(kind: str, fmt: str) -> None:
    check_xgboost_model(xgboost_model(kind, fmt))


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize(("name", "kind", "edit", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_crasher_is_refused_with_the_reason(name: str, kind: str, edit: Edit, message: str, fmt: str) -> None:
    document = xgboost_document(kind)
    edit(document)
    data = as_json(document) if fmt == "json" else ubj_encode(document)
    with pytest.raises(StructureError, match=message):
        check_xgboost_model(data)


def drop(trees: list[dict[str, Any]], *keys: str) -> None:
    for t in trees:
        for key in keys:
            del t[key]


OLDER: list[tuple[str, Edit]] = [
    ("no num_parallel_tree", lambda d: model(d)["gbtree_model_param"].pop("num_parallel_tree")),
    ("no num_target", lambda d: params(d).pop("num_target")),
    ("no iteration_indptr", lambda d: model(d).pop("iteration_indptr")),
    ("no categorical fields", lambda d: drop(model(d)["trees"], "split_type", "categories")),
]


@pytest.mark.parametrize(("name", "edit"), OLDER, ids=[o[0] for o in OLDER])
def test_fields_older_models_lack_are_not_required(name: str, edit: Edit) -> None:
    document = xgboost_document()
    edit(document)
    check_xgboost_model(ubj_encode(document))
    check_xgboost_model(as_json(document))


def test_wide_models_are_read_by_column_and_checked_the_same() -> None:
    document = xgboost_document("many")
    items(tree(document, 33)["left_children"])[0] = 1000
    for data in (ubj_encode(document), as_json(document)):
        with pytest.raises(StructureError, match="tree 33, node 0: left child 1000"):
            check_xgboost_model(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"binf" + b"\0" * 100, "old binary format"),
        (b"\x00\x00\x00?" + b"\0" * 100, "neither JSON nor UBJSON"),
        (b"{}", "empty or malformed"),
        (b"[1, 2]", "neither JSON nor UBJSON"),
        (b'{"learner": {}}', "no 'learner_model_param'"),
    ],
)
def test_what_is_not_a_model_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(StructureError, match=message):
        check_xgboost_model(data)


def test_the_handler_refuses_with_a_validation_error_naming_the_file(tmp_path: Path) -> None:
    document = xgboost_document()
    items(tree(document)["parents"])[5] = -1000
    (tmp_path / "xgboost-model").write_bytes(ubj_encode(document))
    with pytest.raises(
        ArtifactInvalid, match="'xgboost-model' is not a valid XGBoost model: tree 0, node 5: parent -1000"
    ):
        Loader().load(tmp_path)

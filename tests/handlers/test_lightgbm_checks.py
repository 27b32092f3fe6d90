"""LightGBM text models are checked, and loaded without tree_sizes: real ones predict as before, crashers are refused.

The edits come from fuzzing LightGBM 4.7 in subprocesses (bench/fuzz_loaders.py).
Those marked ``# kills`` killed the process (segfault, abort, division by zero) even
with ``tree_sizes`` dropped; the others LightGBM reads out of bounds or into a wrong
tree without dying, this time. With ``tree_sizes`` (as on main) every edit that
changes a tree's length aborts the process too. None is loaded here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ArtifactInvalid
from modelyard.handlers import Loader
from modelyard.handlers.lightgbm import LightGBMModel
from modelyard.handlers.lightgbm_checks import prepare_model_text
from modelyard.handlers.structure import StructureError
from tests.handlers.hostile import lightgbm_model

KINDS = ["regressor", "multiclass", "categorical", "linear"]
ROWS = np.round(np.random.default_rng(3).uniform(0, 5000, size=(20, 6)), 2)
ROWS[:, 1] = np.floor(ROWS[:, 1] / 500)  # categories for the categorical model


def edit_line(key: str, change: Callable[[str], str], occurrence: int = 0) -> Callable[[str], str]:
    """Change the value of the ``occurrence``-th ``key=`` line."""

    def apply(text: str) -> str:
        lines = text.split("\n")
        at = [i for i, line in enumerate(lines) if line.startswith(key + "=")][occurrence]
        lines[at] = key + "=" + change(lines[at].split("=", 1)[1])
        return "\n".join(lines)

    return apply


def value(index: int, new: str) -> Callable[[str], str]:
    def apply(values: str) -> str:
        tokens = values.split(" ")
        tokens[index] = new
        return " ".join(tokens)

    return apply


def categorical_threshold(text: str) -> str:
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("decision_type=") and re.search(r"\b1\b", line))
    kinds = lines[at].split("=")[1].split(" ")
    node = kinds.index("1")
    threshold = next(i for i in range(at, 0, -1) if lines[i].startswith("threshold="))
    values = lines[threshold].split("=")[1].split(" ")
    values[node] = "99"
    lines[threshold] = "threshold=" + " ".join(values)
    return "\n".join(lines)


HOSTILE: list[tuple[str, str, Callable[[str], str], str]] = [
    ("short left_child", "regressor", edit_line("left_child", lambda v: v.rsplit(" ", 1)[0]), "left_child has 5"),
    ("child outside the tree", "regressor", edit_line("left_child", value(0, "100")), "left_child 100 is"),  # kills
    ("child pointing back", "regressor", edit_line("right_child", value(2, "1")), "right_child 1 is neither"),
    ("leaf outside the tree", "regressor", edit_line("right_child", value(3, "-100")), "right_child -100 is"),
    ("split on a missing feature", "regressor", edit_line("split_feature", value(0, "-7")), "feature -7"),  # kills
    (
        "no tree per iteration",  # kills
        "regressor",
        edit_line("num_tree_per_iteration", lambda v: "0"),
        "per_iteration",
    ),
    (
        "classes from nowhere",
        "regressor",
        lambda t: t.replace("num_class=1\n", "num_class=1000\n").replace("iteration=1\n", "iteration=1000\n"),
        "claims 1000 classes",
    ),
    (
        "objective with other classes",  # kills
        "multiclass",
        edit_line("objective", lambda v: v.replace("num_class:3", "num_class:1000")),
        "objective's num_class:1000 differs",
    ),
    ("a tree line without =", "regressor", lambda t: t.replace("is_linear=0\n", "is_linear\n", 1), "without '='"),
    (
        "last tree not ended",
        "regressor",
        lambda t: t[: t.rindex("shrinkage=")] + "shrinkage=1\n",
        "not followed by an empty line",
    ),
    ("parameter not [name: value]", "regressor", lambda t: t.replace("[seed: 0]", "seed=0"), r"not \[name"),  # kills
    ("NUL byte", "regressor", lambda t: t.replace("Tree=3", "Tree=3\0"), "NUL byte"),
    ("categorical threshold past the sets", "categorical", categorical_threshold, "categorical threshold"),  # kills
    (
        "cat_threshold short",
        "categorical",
        edit_line("cat_threshold", lambda v: v.rsplit(" ", 1)[0]),
        "cat_threshold does not have",
    ),
    (
        "linear leaf on a missing feature",
        "linear",
        edit_line("leaf_features", lambda v: "1000 " + v.split(" ", 1)[1], 1),
        "uses a feature",
    ),
]


@pytest.mark.parametrize("kind", KINDS)
def test_real_models_predict_as_lightgbm_does(kind: str) -> None:
    import lightgbm as lgb

    text = lightgbm_model(kind)
    prepared = prepare_model_text(text)
    assert "tree_sizes=" in text.decode()
    assert "tree_sizes=" not in prepared
    expected = lgb.Booster(model_str=text.decode()).predict(ROWS, num_threads=1)
    np.testing.assert_array_equal(lgb.Booster(model_str=prepared).predict(ROWS, num_threads=1), expected)


@pytest.mark.parametrize(("name", "kind", "edit", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_each_crasher_is_refused_with_the_reason(
    name: str, kind: str, edit: Callable[[str], str], message: str
) -> None:
    text = edit(lightgbm_model(kind).decode())
    assert text != lightgbm_model(kind).decode()
    with pytest.raises(StructureError, match=message):
        prepare_model_text(text.encode())


def test_windows_line_endings_load_and_predict_the_same(tmp_path: Path) -> None:
    text = lightgbm_model("multiclass")
    (tmp_path / "model.txt").write_bytes(text.replace(b"\n", b"\r\n"))
    model = Loader().load(tmp_path)
    assert isinstance(model, LightGBMModel)
    import lightgbm as lgb

    expected = lgb.Booster(model_str=text.decode()).predict(ROWS, num_threads=1)
    np.testing.assert_array_equal(model.predict(ROWS), expected)


def test_a_tree_of_another_length_than_tree_sizes_says_loads(tmp_path: Path) -> None:
    # one digit more in a threshold: on main, LightGBM aborts the process
    text = lightgbm_model().decode().replace("threshold=", "threshold=0", 1)
    (tmp_path / "model.txt").write_text(text)
    assert Loader().load(tmp_path).predict(ROWS).shape == (20,)


def test_the_handler_refuses_with_a_validation_error_naming_the_file(tmp_path: Path) -> None:
    text = edit_line("left_child", value(0, "100"))(lightgbm_model().decode())
    (tmp_path / "model.txt").write_text(text)
    with pytest.raises(
        ArtifactInvalid, match=r"'model.txt' is not a valid LightGBM model: tree 0, node 0: left_child 100"
    ):
        Loader().load(tmp_path)

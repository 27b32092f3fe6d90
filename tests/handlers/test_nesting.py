from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import pytest

from modelyard.handlers.nesting import MAX_DEPTH, too_deep
from tests.fixtures import booster_bytes

KEY = b"L" + (7).to_bytes(8, "big") + b"learner"  # a UBJSON object key, as XGBoost writes it


def deep_json(depth: int) -> bytes:
    return b'{"learner": ' + b"[" * depth + b"]" * depth + b"}"


def deep_ubjson(depth: int) -> bytes:
    return b"{" + KEY + b"[" * depth + b"]" * depth + b"}"


@functools.cache
def large_model(fmt: str) -> bytes:
    """150 trees: thousands of containers, so the documents are scanned, not only counted."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10)).astype(np.float32)
    booster = xgb.train({"max_depth": 6, "nthread": 1}, xgb.DMatrix(x, label=x @ rng.normal(size=10)), 150)
    return bytes(booster.save_raw(fmt))


def nesting(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_real_models_pass(fmt: str) -> None:
    assert not too_deep(booster_bytes(0, fmt))
    model = large_model(fmt)
    assert model.count(b"[") + model.count(b"{") > MAX_DEPTH  # scanned, not just counted
    assert not too_deep(model)
    depth = nesting(json.loads(large_model("json")))
    assert too_deep(model, depth - 1)  # the scans measure the depth exactly
    assert not too_deep(model, depth)


@pytest.mark.parametrize("build", [deep_json, deep_ubjson])
def test_deep_documents_are_caught(build: Any) -> None:
    assert not too_deep(build(MAX_DEPTH - 1))
    assert too_deep(build(MAX_DEPTH + 1))
    assert too_deep(build(100_000))


def test_json_strings_and_escapes_do_not_fool_the_scan() -> None:
    hidden = b'{"a": "\\\\", "b": "' + b"[" * 5000 + b'", "c": "\\"' + b"]" * 3000 + b'\\"", "d": [[[]]]}'
    assert nesting(json.loads(hidden)) == 4
    assert not too_deep(hidden, 4)
    assert too_deep(hidden, 3)
    # a quote that looks escaped but is not ("\\\\" ends the string), then real nesting
    real = b'{"a": "x\\\\", "b": ' + b"[" * 50 + b"]" * 50 + b"}"
    assert nesting(json.loads(real)) == 51
    assert too_deep(real, 50)
    assert not too_deep(real, 51)


def test_ubjson_that_cannot_be_walked_counts_as_too_deep() -> None:
    assert too_deep(b"{" + KEY + b"[" * 1500 + b"?")  # an unknown marker deep inside
    assert too_deep(b"{" + KEY + b"[$d#L" + (1 << 62).to_bytes(8, "big") + b"[" * 1500)  # runs past its end

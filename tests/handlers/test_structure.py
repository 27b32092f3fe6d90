"""The JSON and UBJSON parsers that stand between an artifact and a native loader."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from modelyard.handlers.structure import (
    MAX_DEPTH,
    NumberArray,
    StructureError,
    Table,
    parse_json,
    parse_ubjson,
    stack_integers,
)
from tests.handlers.hostile import Typed, nested_json, nested_ubjson, ubj_decode, ubj_encode, xgboost_model

KINDS = ["regressor", "multiclass", "categorical", "dart", "linear", "multitarget", "forest", "many"]


def L(n: int) -> bytes:
    return b"L" + struct.pack(">q", n)


def key(name: bytes) -> bytes:
    return L(len(name)) + name


def plain(value: object) -> object:
    """A parsed document with its number arrays decoded, to compare with json.loads."""
    if isinstance(value, NumberArray):
        if value.dtype is None:
            return json.loads(b"[" + value.data[value.start : value.end] + b"]")
        return np.frombuffer(value.data[value.start : value.end], dtype=value.dtype).tolist()
    if isinstance(value, Typed):
        return value.values
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | Table):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("kind", KINDS)
def test_real_json_models_parse_to_what_json_loads_gives(kind: str) -> None:
    data = xgboost_model(kind, "json")
    assert plain(parse_json(data)) == json.loads(data)


@pytest.mark.parametrize("kind", KINDS)
def test_real_ubjson_models_parse_to_what_an_independent_decoder_gives(kind: str) -> None:
    data = xgboost_model(kind, "ubj")
    assert plain(parse_ubjson(data)) == plain(ubj_decode(data))


def test_number_arrays_stay_bytes_until_asked() -> None:
    document = parse_json(b'{"a": [1, 2, -3], "b": [], "c": [[4], ["x"]]}')
    assert isinstance(document["a"], NumberArray)
    assert len(document["a"]) == 3
    assert document["a"].integers().tolist() == [1, 2, -3]
    assert len(document["b"]) == 0
    assert document["c"][0].integers().tolist() == [4]
    assert document["c"][1] == ["x"]  # an array holding a string is parsed by json.loads


def test_many_like_objects_in_ubjson_are_read_by_column_and_equal_row_by_row() -> None:
    data = xgboost_model("many", "ubj")
    trees = parse_ubjson(data)["learner"]["gradient_booster"]["model"]["trees"]
    assert isinstance(trees, Table)
    assert len(trees) == 40
    assert plain(trees[7]) == plain(ubj_decode(data)["learner"]["gradient_booster"]["model"]["trees"][7])


def test_a_start_planted_inside_a_tree_falls_back_to_the_plain_parser() -> None:
    document = ubj_decode(xgboost_model("many", "ubj"))
    trees = document["learner"]["gradient_booster"]["model"]["trees"]
    # bytes that look like the start of a tree, hidden in a tree's split conditions
    fake = b"{" + key(b"base_weights") + b"[$d#L"
    fake += b"\0" * (-len(fake) % 4)
    trees[3]["split_conditions"] = Typed("d", [*struct.unpack(f">{len(fake) // 4}f", fake), 0.0])
    parsed = parse_ubjson(ubj_encode(document))["learner"]["gradient_booster"]["model"]["trees"]
    assert not isinstance(parsed, Table)
    assert len(parsed) == 40


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_json_is_refused_with_where(depth: int) -> None:
    with pytest.raises(StructureError, match=f"nests deeper than {MAX_DEPTH} levels"):
        parse_json(nested_json(depth))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_ubjson_is_refused(depth: int) -> None:
    with pytest.raises(StructureError, match=f"nests deeper than {MAX_DEPTH} levels"):
        parse_ubjson(nested_ubjson(depth))


def test_deep_ubjson_objects_and_counted_arrays_are_refused() -> None:
    objects = b"{" + (key(b"a") + b"{") * 100 + b"}" * 101
    counted = b"{" + key(b"a") + (b"[#" + L(1)) * 100 + b"Z}"
    for data in (objects, counted):
        with pytest.raises(StructureError, match="nests deeper"):
            parse_ubjson(data)


def test_nesting_up_to_the_limit_is_fine() -> None:
    document = parse_json(b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}")
    assert isinstance(document, dict)


def test_brackets_and_escaped_quotes_inside_json_strings_do_not_count() -> None:
    text = '{"name": "[[[[{{\\"]]]", "k\\\\": "\\\\", "a": [1]}'
    assert json.loads(text)["name"] == '[[[[{{"]]]'
    document = parse_json(text.encode())
    assert document["name"] == '[[[[{{"]]]'
    assert document["k\\"] == "\\"
    deep_in_string = b'{"s": "' + b"[" * 100_000 + b'"}'
    assert parse_json(deep_in_string)["s"] == "[" * 100_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": "open}', "not terminated"),
        (b'{"a": [1, 2}]', "not valid JSON"),
        (b'{"a": 1}}', "closes nothing"),
        (b'{"a": [1, 2]', "truncated"),
        (b'{"a": [1, x]}', "not valid JSON|something else"),
        (b'{"a": 1, "a": 2}', "key 'a' twice"),
        (b'{"a": -0.0e-000}', "not valid JSON"),  # the skeleton's own placeholder, planted
        (b"", "not a JSON object"),
    ],
)
def test_malformed_json_is_refused(data: bytes, message: str) -> None:
    def parse_all() -> None:
        document = parse_json(data)
        stack_integers([v for v in document.values() if isinstance(v, NumberArray)])

    with pytest.raises(StructureError, match=message):
        parse_all()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{" + key(b"a") + b"S" + L(10**6) + b"abc}", "string length at byte 12 is 1000000"),
        (b"{" + key(b"a") + b"S" + L(-5) + b"abc}", "is -5"),
        (b"{" + L(10**7) + b"a}", "key at byte 1 claims 10000000 bytes"),
        (b"{" + L(-1) + b"a}", "claims -1 bytes"),
        (b"{" + key(b"a") + b"[#" + L(10**9) + b"Z}", "array count at byte 13 is 1000000000"),
        (b"{" + key(b"a") + b"[#" + L(-1) + b"}", "is -1"),
        (b"{" + key(b"a") + b"[$d#" + L(10**15) + b"}", "array count at byte 15 is 1000000000000000"),
        (b"{" + key(b"a") + b"[$d#" + L(-3) + b"}", "is -3"),
        (b"{" + key(b"a") + b"[$l#" + L(3) + b"\0" * 8 + b"}", "claims 3 items of 4 bytes, 9 are left"),
        (b"{" + key(b"a") + b"[$C#" + L(1) + b"x}", "unknown typed array element b'C'"),
        (b"{" + key(b"a") + b"[$d" + L(1) + b"abcd}", "has no count"),
        (b"{" + key(b"a") + b"Hxyz}", "unknown marker b'H'"),
        (b"{" + key(b"a") + b"N}", "unknown marker b'N'"),
        (b"{i\x01a" + b"Z}", "not a string with an int64"),
        (b"{" + key(b"a") + b"Z" + key(b"a") + b"T}", "key 'a' twice"),
        (b"{" + key(b"a") + b"Z}junk", "4 bytes follow the end"),
        (b"{" + key(b"a") + b"d\x00", "ends in the middle"),
        (b"{" + key(b"a") + b"[$l#L\x00", "ends in the middle"),
    ],
)
def test_malformed_ubjson_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(StructureError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_ubjson(data)


def test_integers_refuses_non_integers() -> None:
    for text in (b'{"a": [1.5]}', b'{"a": [NaN]}', b'{"a": [1e300]}', b'{"a": [true]}'):
        with pytest.raises(StructureError):
            parse_json(text)["a"].integers()
    floats = parse_ubjson(b"{" + key(b"a") + b"[$d#" + L(1) + struct.pack(">f", 2.5) + b"}")["a"]
    with pytest.raises(StructureError):
        floats.integers()


def test_stack_integers_joins_arrays_and_keeps_their_lengths() -> None:
    document = parse_json(b'{"a": [1, 2], "b": [], "c": [3]}')
    values, lengths = stack_integers([document["a"], document["b"], document["c"], [4, 5]])
    assert values.tolist() == [1, 2, 3, 4, 5]
    assert lengths.tolist() == [2, 0, 1, 2]

"""Every tree of an XGBoost model as concatenated NumPy arrays, for checks over all at once.

Trees come from a JSON model as a list of dicts, from a UBJSON one as a
:class:`~modelyard.handlers.structure.Table` read by column; both end up here as one
array per node field (all trees' nodes one after the other) and one value per tree,
so :mod:`modelyard.handlers.xgboost_checks` needs no loop over trees. Building them
checks each tree's own arrays: present, integers where XGBoost reads integers, and
as long as the tree's ``num_nodes`` says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.handlers.structure import Column, NumberArray, StructureError, Table, stack_integers

__all__ = ["Ragged", "Trees"]

_NODE_INTS = ("left_children", "right_children", "parents", "split_indices")
# arrays XGBoost sizes from num_nodes (or checks against it): one value per node
_PER_NODE = (*_NODE_INTS, "split_conditions", "default_left")
_CATEGORIES = ("categories_nodes", "categories_segments", "categories_sizes", "categories")
_PARAM = re.compile(r"[0-9]{1,10}")
_MAX_NODES = 2**31 - 1
_INT_TYPES = {ord("i"): ">i1", ord("U"): ">u1", ord("I"): ">i2", ord("l"): ">i4", ord("L"): ">i8"}


@dataclass(frozen=True)
class Ragged:
    """One array per tree, concatenated: ``values`` and each tree's ``lengths``."""

    values: np.ndarray
    lengths: np.ndarray


class Trees:
    """Node fields of every tree, concatenated, with what locates a node in its tree.

    Per tree: ``ids``, ``node_counts_by_tree``, ``leaf_sizes`` (size_leaf_vector),
    ``offsets`` (where its nodes start). Per node: ``left``, ``right``, ``parents``,
    ``splits``, ``split_types``, and ``local`` (index in its tree), ``base`` (its
    tree's offset), ``node_counts`` (its tree's size), all int32. ``leaf_slots``: per
    tree, how many leaves a vector-leaf tree's leaf_weights hold.
    """

    def __init__(self, fields: _Fields) -> None:
        count = fields.count
        self.ids = fields.ints("id")
        self.node_counts_by_tree = fields.param("num_nodes", 1, _MAX_NODES)
        self.leaf_sizes = fields.param("size_leaf_vector", 0, _MAX_NODES)
        counts = self.node_counts_by_tree
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        vector = self.leaf_sizes > 1
        for name in _PER_NODE:
            _same_length(fields.lengths(name), counts, name)
        _same_length(fields.lengths("base_weights"), np.where(vector, counts * self.leaf_sizes, counts), "base_weights")
        for name in ("loss_changes", "sum_hessian"):  # statistics: a vector-leaf tree may go without
            lengths = fields.lengths(name, required=not vector.any())
            if lengths is not None:
                _same_length(lengths, counts, name)
        slots = np.zeros(count, dtype=np.int64)
        if vector.any():
            weights = fields.lengths("leaf_weights")
            if weights is None or (weights[vector] % self.leaf_sizes[vector]).any():
                raise StructureError("a vector-leaf tree's leaf_weights do not hold whole leaves")
            slots[vector] = weights[vector] // self.leaf_sizes[vector]
        self.left, self.right, self.parents, self.splits = (fields.nodes(name) for name in _NODE_INTS)
        if fields.has("split_type"):
            _same_length(fields.lengths("split_type"), counts, "split_type")
            if fields.zeros("split_type"):
                self.split_types = np.zeros(len(self.left), dtype=np.int32)
            else:
                self.split_types = fields.nodes("split_type")
            self.categories = tuple(fields.ragged(name) for name in _CATEGORIES)
        else:  # XGBoost then reads no categorical split at all
            self.split_types = np.zeros(len(self.left), dtype=np.int32)
            empty = Ragged(np.zeros(0, dtype=np.int64), np.zeros(count, dtype=np.int64))
            self.categories = (empty, empty, empty, empty)
        self.leaf_slots = slots
        # per node, int32: these arrays are as long as the model has nodes (millions)
        self.node_counts = np.repeat(counts.astype(np.int32), counts)
        self.base = np.repeat(self.offsets.astype(np.int32), counts)
        self.local = np.arange(len(self.left), dtype=np.int32) - self.base

    def by_node(self, per_tree: np.ndarray) -> np.ndarray:
        """A per-tree value repeated for each of the tree's nodes."""
        return np.repeat(per_tree, self.node_counts_by_tree)

    @classmethod
    def of(cls, trees: Sequence[Any]) -> Trees:
        """From a model's ``trees``: a Table (UBJSON) or a list of dicts (JSON)."""
        return cls(_TableFields(trees) if isinstance(trees, Table) else _ListFields(trees))


def _same_length(lengths: np.ndarray | None, expected: np.ndarray, name: str) -> None:
    if lengths is None:
        raise StructureError(f"a tree has no {name!r} array")
    bad = np.flatnonzero(lengths != expected)
    if len(bad):
        raise StructureError(f"tree {bad[0]}: {name} has {lengths[bad[0]]} values, {expected[bad[0]]} expected")


class _Fields:
    """How a tree field is read, one implementation per source."""

    count: int

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def lengths(self, name: str, *, required: bool = True) -> np.ndarray | None:
        """Each tree's array length (None when the trees lack it and it is not required)."""
        raise NotImplementedError

    def ragged(self, name: str) -> Ragged:
        """Each tree's array of integers."""
        raise NotImplementedError

    def ints(self, name: str) -> np.ndarray:
        """Each tree's integer ``name``."""
        raise NotImplementedError

    def param(self, name: str, low: int, high: int) -> np.ndarray:
        """Each tree's ``tree_param`` entry: a string of digits."""
        raise NotImplementedError

    def zeros(self, name: str) -> bool:
        """True when every tree's ``name`` is known to hold zeros only (False: not known)."""
        return False

    def nodes(self, name: str) -> np.ndarray:
        """All trees' arrays of integers, concatenated (their lengths were checked), as int32."""
        values = self.ragged(name).values
        if values.dtype != np.int32:
            if len(values) and (int(values.min()) < -(2**31) or int(values.max()) >= 2**31):
                raise StructureError(f"{name} holds a value outside 32 bits")
            values = values.astype(np.int32)
        return values


class _ListFields(_Fields):
    def __init__(self, trees: Sequence[Any]) -> None:
        if not all(isinstance(t, dict) for t in trees):
            raise StructureError("a tree is not an object")
        self.trees: Sequence[dict[str, Any]] = trees
        self.count = len(trees)

    def _arrays(self, name: str) -> list[NumberArray | list[Any]] | None:
        arrays = [t.get(name) for t in self.trees]
        if not all(isinstance(a, NumberArray | list) for a in arrays):
            return None
        return arrays  # type: ignore[return-value]

    def has(self, name: str) -> bool:
        return any(name in t for t in self.trees)

    def lengths(self, name: str, *, required: bool = True) -> np.ndarray | None:
        arrays = self._arrays(name)
        if arrays is None:
            if required or self.has(name):
                raise StructureError(f"a tree has no {name!r} array")
            return None
        return np.array([a.count if type(a) is NumberArray else len(a) for a in arrays], dtype=np.int64)

    def ragged(self, name: str) -> Ragged:
        arrays = self._arrays(name)
        if arrays is None:
            raise StructureError(f"a tree has no {name!r} array")
        try:
            return Ragged(*stack_integers(arrays))
        except StructureError as exc:
            raise StructureError(f"{name}: {exc}") from None

    def ints(self, name: str) -> np.ndarray:
        values = [t.get(name) for t in self.trees]
        if not all(type(v) is int for v in values):
            raise StructureError(f"a tree's {name!r} is not an integer")
        return np.array(values, dtype=np.int64)

    def param(self, name: str, low: int, high: int) -> np.ndarray:
        out = np.zeros(self.count, dtype=np.int64)
        for i, tree in enumerate(self.trees):
            params = tree.get("tree_param")
            value = params.get(name) if isinstance(params, dict) else None
            if not isinstance(value, str) or not _PARAM.fullmatch(value) or not low <= int(value) <= high:
                raise StructureError(f"tree {i}: tree_param.{name} is {value!r}, not an integer from {low} to {high}")
            out[i] = int(value)
        return out


class _TableFields(_Fields):
    def __init__(self, trees: Table) -> None:
        self.table = trees
        self.count = len(trees)
        self.raw = np.frombuffer(trees.data, dtype=np.uint8)

    def _column(self, path: tuple[str, ...], kind: str) -> Column:
        column = self.table.columns.get(path)
        if column is None or column.kind != kind:
            raise StructureError(f"a tree has no {'.'.join(path)!r} {'array' if kind == 'typed' else 'value'}")
        return column

    def has(self, name: str) -> bool:
        return (name,) in self.table.columns

    def lengths(self, name: str, *, required: bool = True) -> np.ndarray | None:
        if not required and not self.has(name):
            return None
        return self._column((name,), "typed").counts

    def ragged(self, name: str) -> Ragged:
        column = self._column((name,), "typed")
        width = int(column.dtype[-1])
        if not column.counts.any():
            return Ragged(np.zeros(0, dtype=np.int64), column.counts)
        view = memoryview(self.table.data)  # slices of a memoryview copy nothing until the join
        spans = zip(column.starts.tolist(), (column.counts * width).tolist(), strict=True)
        chunk = b"".join([view[s : s + n] for s, n in spans])
        if column.dtype[1] in "iu" and width <= 4 and column.dtype != ">u4":  # native int32: half the memory
            return Ragged(np.frombuffer(chunk, dtype=column.dtype).astype(np.int32), column.counts)
        try:
            values = stack_integers([NumberArray(chunk, 0, len(chunk), len(chunk) // width, column.dtype)])[0]
        except StructureError as exc:
            raise StructureError(f"{name}: {exc}") from None
        return Ragged(values, column.counts)

    def zeros(self, name: str) -> bool:
        # one bytes.count per tree beats decoding the array: split types are nearly always all 0
        column = self._column((name,), "typed")
        if column.dtype not in (">u1", ">i1"):
            return False
        data = self.table.data
        spans = zip(column.starts.tolist(), column.counts.tolist(), strict=True)
        return all(data.count(0, s, s + n) == n for s, n in spans)

    def ints(self, name: str) -> np.ndarray:
        column = self._column((name,), "int")
        out = np.zeros(self.count, dtype=np.int64)
        windows = np.lib.stride_tricks.sliding_window_view
        for marker, dtype in _INT_TYPES.items():
            rows = np.flatnonzero(column.counts == marker)
            if len(rows):
                width = int(dtype[-1])
                out[rows] = windows(self.raw, width)[column.starts[rows]].copy().view(dtype).ravel()
        return out

    def param(self, name: str, low: int, high: int) -> np.ndarray:
        column = self._column(("tree_param", name), "str")
        values = _digits(self.raw, column.starts, column.counts)
        if ((values < low) | (values > high)).any():
            raise StructureError(f"a tree's tree_param.{name} is not an integer from {low} to {high}")
        return values


def _digits(raw: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Strings of 1 to 10 ASCII digits as integers, all at once; -1 for any other string."""
    width = 10
    ok = (lengths >= 1) & (lengths <= width)
    positions = np.minimum(starts[:, None] + np.arange(width), len(raw) - 1)
    digits = raw[positions].astype(np.int64) - ord("0")
    used = np.arange(width) < lengths[:, None]
    ok &= ~(used & ((digits < 0) | (digits > 9))).any(axis=1)
    powers = np.where(used, 10 ** np.clip(lengths[:, None] - 1 - np.arange(width), 0, None), 0)
    return np.where(ok, (np.where(used, digits, 0) * powers).sum(axis=1), -1)

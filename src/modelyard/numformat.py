"""Numbers as text, a whole array at a time: ``float32`` at its shortest, as numpy prints it.

``str(np.float32(v))`` prints the fewest digits that read back as the same
``float32`` (and, among those, the closest to ``v``), positional from ``1e-4``
up to ``1e6`` and scientific outside; ``json`` prints ``float(str(v))`` with the
same digits, positional from ``1e-4`` up to ``1e16``. Numpy computes each with
big integers, one value at a time (~0.5 µs). :func:`float32_text` finds the same
digits for a whole array with 64-bit integer arithmetic:

``v = m * 2**e`` exactly, and the values that read back as ``v`` lie within half
a unit in the last place on either side (a quarter below powers of two; the ends
included when ``m`` is even, as numpy's Dragon4 rounds). With ``v``'s first
digit at ``10**E``, its nine-digit prefix ``q9 = floor(v / 10**(E - 8))`` and the
remainder are computed exactly; dropping ``j`` more digits keeps a number inside
the interval when the dropped part ``q9 % 10**j`` (rounding down) or its
complement (rounding up) is within the margin, and the largest such ``j`` gives
the shortest digits; both directions fitting, the closer wins (the even digit
on a tie). The integers stay below ``2**63`` for ``float32`` values whose
binade keeps them there (:data:`_EXACT_BINADES`, about ``1e-7`` to ``1e22``);
other values, zeros, NaN and infinities are printed by numpy itself.

The text is assembled in a byte matrix, one row per value, with NUL bytes where a
row needs no character; removing the NULs (``bytes.translate``) joins the rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Style", "float32_table", "float32_text", "float32_values"]

#: ``numpy``: ``str(np.float32(v))``; ``json``: what ``json.dumps(float(str(np.float32(v))))`` writes
Style = Literal["numpy", "json"]

_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
_POW10_FLOAT = np.array([10.0**k for k in range(23)])
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype="<u4")  # "0042" as 4 bytes
_LIMIT = 2**61
_BLOCK_ROWS = 32_768


def _exact_binades() -> tuple[np.ndarray, np.ndarray]:
    """Which float32 exponents keep every integer below ``2**61``, and the float32 powers of ten.

    ``thresholds[E + 45]`` is the smallest float32 at or above ``10**E``, so the
    first digit's exponent of a float32 ``v`` is where ``v`` falls among them.
    """
    from fractions import Fraction

    thresholds = []
    up, down = np.float32(np.inf), np.float32(0)
    for power in range(-45, 39):
        exact = Fraction(10) ** power
        candidate = np.float32(float(exact))
        while Fraction(float(candidate)) < exact:
            candidate = np.nextafter(candidate, up)
        while Fraction(float(np.nextafter(candidate, down))) >= exact:
            candidate = np.nextafter(candidate, down)
        thresholds.append(candidate)
    table = np.array(thresholds, dtype=np.float32)
    safe = np.zeros(256, dtype=bool)
    for biased in range(2, 255):  # normal numbers that are not the smallest binade
        e = biased - 150
        low, high = Fraction(2) ** (e + 23), (2**24 - 1) * Fraction(2) ** e
        first = max(p for p in range(-46, 40) if Fraction(10) ** p <= low)
        last = max(p for p in range(-46, 40) if Fraction(10) ** p <= high)
        fits = True
        for digit_exponent in range(first, last + 1):
            k9 = digit_exponent - 8
            s2, s5 = e - 2 - k9, -k9
            mult = 2 ** max(s2, 0) * 5 ** max(s5, 0)
            scale = 2 ** max(-s2, 0) * 5 ** max(-s5, 0)
            # 4 * m * mult, and (2 * dropped - 10**level) * scale for the levels where it is used (<= 8)
            fits &= 2**26 * mult < _LIMIT and 10**8 * scale < _LIMIT
        safe[biased] = fits
    return safe, table


_EXACT_BINADES, _THRESHOLDS = _exact_binades()


def _scaling() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per binade, the float32 power of ten inside it (else inf); per binade and side of that power
    (index ``2 * biased + reached``), with ``E`` the first digit's exponent and ``k9 = E - 8``:
    ``k9``, ``mult`` and ``scale`` such that ``v / 10**k9 = 4 * m * mult / scale / 4``."""
    power = np.full(256, np.inf, dtype=np.float32)
    k9 = np.zeros(512, dtype=np.int64)
    mult = np.ones(512, dtype=np.int64)
    scale = np.ones(512, dtype=np.int64)
    for biased in np.flatnonzero(_EXACT_BINADES).tolist():
        low = np.float32(2.0 ** (biased - 127))
        digit = int(np.searchsorted(_THRESHOLDS, low, side="right")) - 46
        if digit + 46 < len(_THRESHOLDS) and _THRESHOLDS[digit + 46] < 2.0 ** (biased - 126):
            power[biased] = _THRESHOLDS[digit + 46]
        for reached in (0, 1):
            k = digit + reached - 8
            s2, s5 = biased - 152 - k, -k
            k9[2 * biased + reached] = k
            mult[2 * biased + reached] = 2 ** max(s2, 0) * 5 ** max(s5, 0)
            scale[2 * biased + reached] = 2 ** max(-s2, 0) * 5 ** max(-s5, 0)
    return power, k9, mult, scale


_BINADE_POWER, _K9, _MULT, _SCALE = _scaling()


def _shortest(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shortest digits ``d``, the exponent ``k`` of their last one (``|v| = d * 10**k``) and how many
    there are (see module doc)."""
    bits = values.view(np.uint32)
    fraction, biased = (bits & 0x7FFFFF).astype(np.int64), bits >> 23 & 0xFF
    odd = fraction & 1
    below = 2 - (fraction == 0)  # the margin below, in quarter units: smaller at a power of two
    # the binade and whether the value reaches the binade's power of ten (a binade holds at most one)
    # give the first digit's exponent, hence k9 and the integers of the scaling (see _SCALING)
    case = 2 * biased + (np.abs(values) >= _BINADE_POWER[biased])
    k9, mult, scale = _K9[case], _MULT[case], _SCALE[case]
    q9, r9 = np.divmod(4 * (fraction | 0x800000) * mult, scale)
    # Dropping digits worth ``dropped`` units of q9's last digit keeps the number within the margins
    # when dropped * scale <= low_cap (rounding down) or (10**j - dropped) * scale <= high_cap (up).
    # Both margins are below 60 units (half an ulp is at most 2**-24 of the value), so dropping
    # j >= 2 digits fits only when digits 2..j-1 are all 0 (down) or all 9 (up).
    low_cap = below * mult - r9 - odd
    high_cap = 2 * mult + r9 - odd
    last, last2, upper = q9 % 10, q9 % 100, q9 // 100
    low_level = np.where(last * scale <= low_cap, 1, np.where(low_cap >= 0, 0, -1))
    two = last2 * scale <= low_cap
    low_level[two] = 2 + _trailing_zeros(upper[two])
    high_level = np.where((10 - last) * scale <= high_cap, 1, np.where(scale <= high_cap, 0, -1))
    two = (100 - last2) * scale <= high_cap
    high_level[two] = 2 + _trailing_zeros(upper[two] + 1)
    level = np.maximum(low_level, high_level)
    power = _POW10[level]
    kept, dropped = np.divmod(q9, power)
    # both directions fit: the closer wins, the even digit on a tie (the dropped part against half a unit);
    # that happens at levels up to 8 only (at 9 the dropped part is q9 itself, far beyond the margin
    # below), so the product's wrapping at level 9 is never used
    twice = (2 * dropped - power) * scale + 2 * r9  # 2 * (dropped part - half of power), in 1/scale units
    up = np.where(twice == 0, kept % 2 == 1, twice > 0)
    up = np.where((level <= low_level) & (level <= high_level), up, level > low_level)
    # q9 has nine digits and a maximal level leaves no trailing zero, so the digits left are 9 - level
    # (one, when all nine round up to the next power of ten)
    return kept + up, k9 + level, np.maximum(9 - level, 1)


def _trailing_zeros(numbers: np.ndarray) -> np.ndarray:
    """How many decimal zeros each positive integer ends with."""
    count = np.zeros(len(numbers), dtype=np.int64)
    active = np.arange(len(numbers))
    rest = numbers
    while len(active):
        more = rest % 10 == 0
        active, rest = active[more], rest[more] // 10
        count[active] += 1
    return count


def _digit_block(digits: np.ndarray, count: np.ndarray, width: int) -> np.ndarray:
    """The digits of each number as characters, left-aligned in ``width`` columns and padded with '0'."""
    padded = digits * _POW10[9 - count]  # nine digits: the first, then two groups of four
    block = np.empty((len(digits), 3 + max(width, 9)), dtype=np.uint8)
    block[:, 3] = ord("0") + padded // 100_000_000
    groups = block[:, 4:12].view(np.uint32)  # four characters per group, from one table lookup each
    groups[:, 0] = _QUADS[padded // 10_000 % 10_000]
    groups[:, 1] = _QUADS[padded % 10_000]
    block[:, 12:] = ord("0")
    return block[:, 3 : 3 + width]


def float32_table(
    values: np.ndarray, style: Style, *, row_start: bytes = b"", cell_end: bytes, row_end: bytes, end: bytes = b""
) -> bytes:
    """A 2-D float32 array as text: ``row_start``, then each cell followed by ``cell_end``,
    the last of a row by ``row_end`` instead, and the very last by ``end``."""
    rows, columns = values.shape
    column = np.tile(np.arange(columns), rows)
    ending = np.where(column < columns - 1, 0, 1)
    if rows * columns:
        ending[-1] = 2
    before = _variants((row_start, b""))[np.where(column == 0, 0, 1)] if row_start else None
    matrix = _text_matrix(values.reshape(-1), style, before, _variants((cell_end, row_end, end))[ending])
    # in blocks: each holds the GIL for a moment only, so the event loop gets a turn between them
    blocks = range(0, len(matrix), _BLOCK_ROWS)
    return b"".join(matrix[start : start + _BLOCK_ROWS].tobytes().translate(None, b"\0") for start in blocks)


def float32_text(values: np.ndarray, style: Style) -> np.ndarray:
    """Each float32 as text (see module doc): one row of bytes per value, NUL where nothing is written."""
    return _text_matrix(values, style, None, None)


def _variants(texts: tuple[bytes, ...]) -> np.ndarray:
    """Byte strings as the rows of a NUL-padded matrix."""
    width = max(1, *map(len, texts))
    return np.array(texts, dtype=f"S{width}").view(np.uint8).reshape(len(texts), width)


def _text_matrix(values: np.ndarray, style: Style, before: np.ndarray | None, after: np.ndarray | None) -> np.ndarray:
    """Rows of ``before`` (if any), each value's text and ``after`` (if any), NUL-padded."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    biased = (values.view(np.uint32) >> 23) & 0xFF
    fast = _EXACT_BINADES[biased]
    if fast.all():
        layout = _Layout(values, style)
        slow, texts = np.zeros(0, dtype=np.int64), []
    else:
        layout = _Layout(values[fast], style)
        slow = np.flatnonzero(~fast)
        texts = [_slow(values[index], style).encode() for index in slow.tolist()]
    head = 0 if before is None else before.shape[1]
    width = max(layout.width, *map(len, texts)) if texts else layout.width
    tail = 0 if after is None else after.shape[1]
    out = np.zeros((len(values), head + width + tail), dtype=np.uint8)
    if before is not None:
        out[:, :head] = before
    if after is not None:
        out[:, head + width :] = after
    if texts:
        cells = np.zeros((len(values), width), dtype=np.uint8)
        fast_rows = np.zeros((len(layout.values), layout.width), dtype=np.uint8)
        layout.write(fast_rows)
        cells[fast, : layout.width] = fast_rows
        for index, text in zip(slow.tolist(), texts, strict=True):
            cells[index, : len(text)] = np.frombuffer(text, dtype=np.uint8)
        out[:, head : head + width] = cells
    else:
        layout.write(out[:, head : head + width])
    return out


def float32_values(values: np.ndarray) -> np.ndarray:
    """``float(str(v))`` for each float32, as float64: its shortest digits, read back as a double."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    biased = (values.view(np.uint32) >> 23) & 0xFF
    fast = _EXACT_BINADES[biased]
    out = values.astype(np.float64)  # zeros, NaN and infinities are the same
    if fast.any():
        digits, last, _ = _shortest(values[fast])
        # digits < 2**53 and 10**|last| exact: one correctly rounded operation, as float() rounds
        power = _POW10_FLOAT[np.abs(last)]
        number = np.where(last >= 0, digits * power, digits / power)
        out[fast] = np.where(values[fast] < 0, -number, number)
    for index in np.flatnonzero(~fast & np.isfinite(values) & (values != 0)).tolist():
        out[index] = float(str(values[index]))
    return out


def _slow(value: np.float32, style: Style) -> str:
    if style == "numpy":
        return str(value)
    number = float(str(value))
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


class _Layout:
    """Where each character of each value's text goes, for values in the exact binades.

    Columns: the sign; "0." for positional numbers below one and the zeros after
    the point; then each digit followed by a column for the point (written after
    the units digit, or after the first digit in scientific notation); then the
    exponent. A whole number's text ends with the digit after its point: the
    padding '0' ("100.0"). Unused columns stay NUL.
    """

    def __init__(self, values: np.ndarray, style: Style) -> None:
        digits, last, count = _shortest(values)
        first = last + count - 1  # the exponent of the first digit
        if style == "numpy":
            magnitude = np.abs(values).astype(np.float64)  # compared as numpy does, to 1e-4 itself
            positional = (magnitude >= 1e-4) & (magnitude < 1e6)
        else:
            positional = (first >= -4) & (first < 16)
        self.values, self.first, self.positional = values, first, positional
        self.below_one = positional & (first < 0)
        self.zeros = int(np.where(self.below_one, -first - 1, 0).max(initial=0))
        # the digit the point follows: the units in positional (none below one), the first in scientific
        self.point = np.where(positional, np.where(self.below_one, -1, first), np.where(count > 1, 0, -1))
        # digits written: all of them, and in positional the zeros up to the units and the one after the point
        self.shown = np.where(positional & ~self.below_one, np.maximum(count, first + 2), count)
        self.places = int(self.shown.max(initial=1))
        self.block = _digit_block(digits, count, self.places)
        self.scientific = bool((~positional).any())
        self.width = 1 + (2 + self.zeros if self.below_one.any() else 0) + 2 * self.places + 4 * self.scientific

    def write(self, out: np.ndarray) -> None:
        """Fill ``out`` (one row per value, ``width`` columns, all NUL)."""
        nul = np.uint8(0)
        out[:, 0] = np.where(self.values < 0, np.uint8(ord("-")), nul)
        at = 1
        if self.below_one.any():
            out[:, at] = out[:, at + 1] = np.where(self.below_one, np.uint8(ord("0")), nul)
            out[self.below_one, at + 1] = ord(".")
            zeros = np.where(self.below_one, -self.first - 1, 0)
            for k in range(self.zeros):
                out[:, at + 2 + k] = np.where(zeros > k, np.uint8(ord("0")), nul)
            at += 2 + self.zeros
        place = np.arange(self.places)
        out[:, at : at + 2 * self.places : 2] = np.where(place < self.shown[:, None], self.block, nul)
        out[:, at + 1 : at + 2 * self.places : 2] = np.where(place == self.point[:, None], np.uint8(ord(".")), nul)
        at += 2 * self.places
        if self.scientific:
            rows = np.flatnonzero(~self.positional)
            power = self.first[rows]
            out[rows, at] = ord("e")
            out[rows, at + 1] = np.where(power < 0, ord("-"), ord("+"))
            out[rows, at + 2] = ord("0") + np.abs(power) // 10
            out[rows, at + 3] = ord("0") + np.abs(power) % 10

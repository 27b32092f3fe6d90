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
binade keeps them there (:data:`_EXACT_BINADES`, about ``1e-7`` to ``1e20``);
other values, zeros, NaN and infinities are printed by numpy itself.

The text is assembled in a byte matrix, one row per value, with NUL bytes where a
row needs no character; removing the NULs (one ``bytes.replace``) joins the rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["Style", "float32_table", "float32_text", "float32_values"]

#: ``numpy``: ``str(np.float32(v))``; ``json``: what ``json.dumps(float(str(np.float32(v))))`` writes
Style = Literal["numpy", "json"]

_POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
_POW10_FLOAT = np.array([10.0**k for k in range(23)])
_POW5 = np.array([5**k for k in range(27)], dtype=np.int64)
_TRIPLETS = np.frombuffer("".join(f"{i:03d}" for i in range(1000)).encode(), dtype=np.uint8).reshape(1000, 3)
_LIMIT = 2**61


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
            fits &= 2**26 * mult < _LIMIT and 4 * scale < _LIMIT and 4 * mult < _LIMIT
            fits &= max(s5, -s5) < len(_POW5) and max(s2, -s2) < 61
        safe[biased] = fits
    return safe, table


_EXACT_BINADES, _THRESHOLDS = _exact_binades()


def _shortest(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shortest digits ``d`` and the exponent ``k`` of their last one (``|v| = d * 10**k``), see module doc."""
    bits = values.view(np.uint32).astype(np.int64)
    fraction, biased = bits & 0x7FFFFF, (bits >> 23) & 0xFF
    m, e = fraction | 0x800000, biased - 150
    odd = m & 1
    below = np.where(fraction == 0, 1, 2)  # the margin below, in quarter units: smaller at a power of two
    digit_exponent = np.searchsorted(_THRESHOLDS, np.abs(values), side="right").astype(np.int64) - 46
    k9 = digit_exponent - 8
    s2, s5 = e - 2 - k9, -k9
    mult = np.left_shift(_POW5[np.maximum(s5, 0)], np.maximum(s2, 0))
    scale = np.left_shift(_POW5[np.maximum(-s5, 0)], np.maximum(-s2, 0))
    q9, r9 = np.divmod(4 * m * mult, scale)
    low_cap = below * mult - r9 - odd
    low_max = np.where(low_cap >= 0, low_cap // scale, -1)  # the dropped part allowed when rounding down
    high_max = (2 * mult + r9 - odd) // scale  # its complement allowed when rounding up
    # Both margins are below 60 units of q9's last digit (half an ulp is at most 2**-24 of the value),
    # so dropping j >= 2 digits fits only when digits 2..j-1 are all 0 (down) or all 9 (up).
    last, last2, upper = q9 % 10, q9 % 100, q9 // 100
    low_level = np.where(
        last2 <= low_max, 2 + _trailing_zeros(upper), np.where(last <= low_max, 1, np.where(low_max >= 0, 0, -1))
    )
    high_level = np.where(
        100 - last2 <= high_max,
        2 + _trailing_zeros(upper + 1),
        np.where(10 - last <= high_max, 1, np.where(high_max >= 1, 0, -1)),
    )
    level = np.maximum(low_level, high_level)
    power = _POW10[level]
    kept, dropped = np.divmod(q9, power)
    low, high = level <= low_level, level <= high_level
    # both directions fit: compare the dropped part (dropped * scale + r9) with half of power * scale
    gap = power - 2 * dropped
    down = (gap >= 2) | ((gap == 1) & (scale > 2 * r9))
    tie = ((gap == 1) & (scale == 2 * r9)) | ((gap == 0) & (r9 == 0))
    down = np.where(tie, kept % 2 == 0, down)
    down = np.where(low & high, down, low)
    return kept + ~down, k9 + level


def _trailing_zeros(numbers: np.ndarray) -> np.ndarray:
    """How many decimal zeros each positive integer ends with."""
    count = np.zeros(len(numbers), dtype=np.int64)
    active = np.flatnonzero(numbers % 10 == 0)
    rest = numbers[active] // 10
    while len(active):
        count[active] += 1
        more = rest % 10 == 0
        active, rest = active[more], rest[more] // 10
    return count


def _digit_block(digits: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The digits of each number as characters, left-aligned in 9 columns and padded with '0'."""
    padded = digits * _POW10[9 - count]
    groups = (padded // 1_000_000, padded // 1000 % 1000, padded % 1000)
    return np.concatenate([_TRIPLETS[g] for g in groups], axis=1)


def float32_table(
    values: np.ndarray, style: Style, *, row_start: bytes = b"", cell_end: bytes, row_end: bytes, end: bytes = b""
) -> bytes:
    """A 2-D float32 array as text: ``row_start``, then each cell followed by ``cell_end``,
    the last of a row by ``row_end`` instead, and the very last by ``end``."""
    rows, columns = values.shape
    cells = float32_text(values.reshape(-1), style)
    column = np.tile(np.arange(columns), rows)
    ending = np.where(column < columns - 1, 0, 1)
    if rows * columns:
        ending[-1] = 2
    suffix = _variants((cell_end, row_end, end))[ending]
    parts = [cells, suffix]
    if row_start:
        parts.insert(0, _variants((row_start, b""))[np.where(column == 0, 0, 1)])
    return np.concatenate(parts, axis=1).tobytes().translate(None, b"\0")


def _variants(texts: tuple[bytes, ...]) -> np.ndarray:
    """Byte strings as the rows of a NUL-padded matrix."""
    width = max(1, *map(len, texts))
    return np.array(texts, dtype=f"S{width}").view(np.uint8).reshape(len(texts), width)


def float32_text(values: np.ndarray, style: Style) -> np.ndarray:
    """Each float32 as text (see module doc): one row of bytes per value, NUL where nothing is written."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    biased = (values.view(np.uint32) >> 23) & 0xFF
    fast = _EXACT_BINADES[biased]
    if fast.all():
        return _render(values, style)
    slow = np.flatnonzero(~fast)
    texts = [_slow(values[index], style).encode() for index in slow.tolist()]
    rendered = _render(values[fast], style)
    out = np.zeros((len(values), max(rendered.shape[1], *map(len, texts))), dtype=np.uint8)
    out[fast, : rendered.shape[1]] = rendered
    for index, text in zip(slow.tolist(), texts, strict=True):
        out[index, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    return out


def float32_values(values: np.ndarray) -> np.ndarray:
    """``float(str(v))`` for each float32, as float64: its shortest digits, read back as a double."""
    values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    biased = (values.view(np.uint32) >> 23) & 0xFF
    fast = _EXACT_BINADES[biased]
    out = values.astype(np.float64)  # zeros, NaN and infinities are the same
    if fast.any():
        digits, last = _shortest(values[fast])
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


def _render(values: np.ndarray, style: Style) -> np.ndarray:
    """Text rows for values in the exact binades: sign, integer part, point, fraction, exponent.

    Each part is a block of columns; a character's column need not be next to the one
    before it, since the NULs between are dropped (so no digit has to be shifted).
    """
    n = len(values)
    digits, last = _shortest(values)
    count = np.searchsorted(_POW10, digits, side="right")  # 1 to 9 digits
    first = last + count - 1  # the exponent of the first digit
    if style == "numpy":
        magnitude = np.abs(values).astype(np.float64)  # compared as numpy does, to 1e-4 itself
        positional = (magnitude >= 1e-4) & (magnitude < 1e6)
    else:
        positional = (first >= -4) & (first < 16)
    scientific = ~positional
    below_one = positional & (first < 0)
    # the last digit of the integer part: the units in positional, the first digit in scientific
    units = np.where(positional, first, 0)
    block = _digit_block(digits, count)
    integer_width = int(units.max(initial=0)) + 1
    columns = np.arange(max(integer_width, 9))
    out = [np.where(values < 0, np.uint8(ord("-")), np.uint8(0))[:, None]]
    if below_one.any():
        out.append(np.where(below_one, np.uint8(ord("0")), np.uint8(0))[:, None])
    integer = block if integer_width <= 9 else np.pad(block, ((0, 0), (0, integer_width - 9)), constant_values=48)
    out.append(np.where(columns[:integer_width] <= units[:, None], integer[:, :integer_width], np.uint8(0)))
    point = positional | (count > 1)
    out.append(np.where(point, np.uint8(ord(".")), np.uint8(0))[:, None])
    zeros = np.where(below_one, -first - 1, 0)
    if zeros.any():
        out.append(np.where(columns[: int(zeros.max())] < zeros[:, None], np.uint8(ord("0")), np.uint8(0)))
    fraction = (columns[:9] > units[:, None]) & (columns[:9] < count[:, None])
    out.append(np.where(fraction, block, np.uint8(0)))
    whole = positional & (count <= units + 1)  # "100.0": the fraction is a zero
    out.append(np.where(whole, np.uint8(ord("0")), np.uint8(0))[:, None])
    if scientific.any():
        exponent = np.zeros((n, 4), dtype=np.uint8)
        power = np.abs(first[scientific])
        exponent[scientific, 0] = ord("e")
        exponent[scientific, 1] = np.where(first[scientific] < 0, ord("-"), ord("+"))
        exponent[scientific, 2] = ord("0") + power // 10
        exponent[scientific, 3] = ord("0") + power % 10
        out.append(exponent)
    return np.concatenate(out, axis=1)

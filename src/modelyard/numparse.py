"""Decimal numbers in text, read a whole body at a time with numpy.

:func:`scan` cuts a body into tokens at separator bytes and reads every token
that is a decimal number (``-12``, ``3.5``, ``.5``, `` 1e-05 ``, ``+2.E3``)
exactly as Python's ``float()`` would, without a Python call per value. The
tokens it cannot vouch for are left ``HARD`` for the caller to read with
``float()`` itself: ``nan``/``inf``, ``1_000``, other whitespace, garbage, and
the rare numbers whose correct rounding needs more than the arithmetic below
(more than 19 significant digits, exponents beyond about 27).

How a number is read exactly: its digits form an integer mantissa ``M`` (at most
19 digits) and a power of ten ``k``. When ``M <= 2**53`` and ``|k| <= 22`` both
are exact doubles, so ``M * 10**k`` (or ``M / 10**-k``) is one IEEE operation,
correctly rounded: the same double ``float()`` returns (Clinger's fast path,
also used by CPython's own ``strtod``). Where ``long double`` has a 64-bit
mantissa (x86), mantissas up to ``2**64`` and ``|k| <= 27`` are computed there
and kept unless the result sits exactly halfway between two doubles, the one
case where rounding twice could differ from rounding once.

The work is proportional to the body's bytes: one pass finds the bytes that are
not digits, and everything after works on those few positions and on the digit
runs between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EMPTY", "HARD", "NUMBER", "Tokens", "scan"]

#: token kinds
EMPTY, NUMBER, HARD = 0, 1, 2

# byte classes
_DIGIT, _SEP, _DOT, _MINUS, _PLUS, _EXP, _SPACE, _OTHER = 0, 1, 2, 3, 4, 5, 6, 7
_MAX_DIGITS = 19  # a run of up to 19 digits fits in uint64
_POW10 = np.array([10.0**k for k in range(23)])  # exact doubles
_POW10_INT = np.array([10**k for k in range(_MAX_DIGITS + 1)], dtype=np.uint64)
_TWO53 = 2**53


def _long_double_powers() -> Any:
    """Exact powers of ten up to 10**27 in a 64-bit-mantissa long double, or None elsewhere."""
    if np.finfo(np.longdouble).nmant < 63:
        return None
    powers = [np.longdouble(1)]
    for _ in range(27):
        powers.append(powers[-1] * np.longdouble(10))  # 5**27 < 2**63: every product is exact
    return np.array(powers, dtype=np.longdouble)


_POW10_LD = _long_double_powers()


def _classes(separators: bytes, spaces: bytes) -> np.ndarray:
    table = np.full(256, _OTHER, dtype=np.uint8)
    table[ord("0") : ord("9") + 1] = _DIGIT
    table[ord(".")] = _DOT
    table[ord("-")] = _MINUS
    table[ord("+")] = _PLUS
    table[[ord("e"), ord("E")]] = _EXP
    table[list(spaces)] = _SPACE
    table[list(separators)] = _SEP
    return table


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens of a body, in order; token ``i`` is ``text[starts[i]:ends[i]]``.

    ``text`` is the body without the spaces that touched a separator (they change no
    token's meaning).

    ``after[i]`` is the separator byte that ends token ``i`` (0 for the last one).
    ``values[i]`` is its number when ``kinds[i]`` is ``NUMBER``, else NaN;
    ``digits_only[i]`` says the token is nothing but digits (a non-negative integer).
    """

    text: bytes
    starts: np.ndarray
    ends: np.ndarray
    after: np.ndarray
    kinds: np.ndarray
    values: np.ndarray
    digits_only: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def scan(body: bytes, separators: bytes, spaces: bytes = b" \t", *, json: bool = False) -> Tokens:
    """Cut ``body`` at every byte of ``separators`` and read the numbers (see module doc).

    Consecutive separators make empty tokens; ``n`` separators make ``n + 1`` tokens.
    ``spaces`` may surround a number, as ``float()`` allows; a token of nothing but
    spaces is ``EMPTY``. With ``json``, numbers follow JSON's stricter grammar (no
    ``+`` sign, no leading zeros, digits on both sides of a point; the others are
    ``HARD``) and an integer ``-0`` is ``0.0``, as :mod:`json` reads it.
    """
    body = _trim_spaces(body, separators, spaces)
    data = np.frombuffer(body, dtype=np.uint8)
    table = _classes(separators, spaces)
    # the positions of every byte that is not a digit, and an end marker that acts as a separator
    marks = np.flatnonzero(np.subtract(data, ord("0"), dtype=np.uint8) > 9)
    classes = np.empty(len(marks) + 1, dtype=np.uint8)
    classes[:-1] = table[data[marks]]
    classes[-1] = _SEP
    positions = np.empty(len(marks) + 1, dtype=np.int64)
    positions[:-1] = marks
    positions[-1] = len(data)
    # the run of digits just before each mark
    runs = np.empty_like(positions)
    runs[0] = positions[0]
    np.subtract(positions[1:], positions[:-1] + 1, out=runs[1:])
    values, whole = _run_values(data, positions, runs)
    ends_token = classes == _SEP
    if ends_token.all():  # integers only: each token is one run of digits (or nothing)
        ends = positions
        kinds, numbers = _integers(runs, values, whole)
        if json and len(data):  # no leading zeros
            first_digit = data[np.clip(positions - runs, 0, len(data) - 1)]
            kinds[(runs > 1) & (first_digit == ord("0")) & (kinds == NUMBER)] = HARD
        digits_only = kinds == NUMBER
    else:
        stop = np.flatnonzero(ends_token)  # each token's separator mark
        ends = positions[stop]
        kinds, numbers, digits_only = _decimals(data, positions, classes, runs, values, whole, stop, json)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    after = np.zeros(len(ends), dtype=np.uint8)
    after[:-1] = data[ends[:-1]]
    return Tokens(body, starts, ends, after, kinds, numbers, digits_only)


def _trim_spaces(body: bytes, separators: bytes, spaces: bytes) -> bytes:
    """``body`` without the spaces right before or after a separator (``1, 2`` is read as ``1,2``).

    Cheaper than skipping them token by token; longer runs of spaces are left to that.
    """
    if not any(space in body for space in spaces):
        return body
    data = np.frombuffer(body, dtype=np.uint8)
    space = np.zeros(len(data) + 2, dtype=bool)  # padded: the body's ends act as separators
    separator = np.ones(len(data) + 2, dtype=bool)
    separator[1:-1] = False
    for byte in spaces:
        space[1:-1] |= data == byte
    for byte in separators:
        separator[1:-1] |= data == byte
    trimmed = space[1:-1] & (separator[:-2] | separator[2:])
    if not trimmed.any():
        return body
    return data[~trimmed].tobytes()


def _run_values(data: np.ndarray, positions: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run of digits as an integer, and whether that integer is the run's whole value.

    A run's value is read from its last 19 digits; a longer run is whole only when its
    other digits are leading zeros (up to 8 of them: ``0.000123...`` is common).
    Eight digits at a time: the eight bytes before a mark are read as one little-endian
    integer and combined with three multiplications (the "SWAR" digit parsing of
    simdjson and fast_float).
    """
    longest = int(runs.max())
    if longest == 0:
        return np.zeros(len(runs), dtype=np.uint64), np.ones(len(runs), dtype=bool)
    if longest == 1:  # single digits (the bytes of a small-integer body): no arithmetic
        digits = np.take(data, positions - 1, mode="clip") - np.uint8(ord("0"))
        digits[runs == 0] = 0
        return digits.astype(np.uint64), np.ones(len(runs), dtype=bool)
    padded = np.zeros(len(data) + 8, dtype=np.uint8)
    padded[8:] = data
    # windows[i] holds data[i - 8 : i], read at every byte offset
    windows = np.ndarray((len(data) + 1,), dtype="<u8", buffer=padded, strides=(1,))
    values = _eight_digits(windows[positions], runs)
    whole = runs <= _MAX_DIGITS
    longer = np.flatnonzero(runs > 8)
    for part, width in ((1, 8), (2, 3)):  # digits 9-16, then 17-19
        if not len(longer):
            break
        ends = positions[longer] - 8 * part
        upper = _eight_digits(windows[ends], np.minimum(runs[longer] - 8 * part, width))
        values[longer] += upper * np.uint64(10 ** (8 * part))
        longer = longer[runs[longer] > 8 * part + width]
    if len(longer):  # more than 19 digits: whole when the first ones (up to 8) are zeros
        zeros = _eight_digits(windows[positions[longer] - _MAX_DIGITS], runs[longer] - _MAX_DIGITS) == 0
        whole[longer] = zeros & (runs[longer] <= _MAX_DIGITS + 8)
    return values, whole


def _eight_digits(chunks: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The integer written by the last ``min(length, 8)`` bytes of each 8-byte chunk (all digits)."""
    keep = np.uint64(0xFFFFFFFFFFFFFFFF) << (np.uint64(8) * (8 - np.minimum(lengths, 8)).astype(np.uint64))
    value = chunks & keep
    value -= np.uint64(0x3030303030303030) & keep  # each kept byte is a digit: no borrow crosses bytes
    value = value * np.uint64(10) + (value >> np.uint64(8))
    low = (value & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1000000 << 32))
    high = ((value >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(1 + (10000 << 32))
    combined: np.ndarray = (low + high) >> np.uint64(32)
    return combined


def _integers(runs: np.ndarray, values: np.ndarray, whole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # an integer converts with one rounding whatever its size
    numbers = values.astype(np.float64)
    numbers[runs == 0] = np.nan
    kinds = np.full(len(runs), NUMBER, dtype=np.uint8)
    kinds[runs == 0] = EMPTY
    if not whole.all():
        kinds[~whole] = HARD
        numbers[~whole] = np.nan
    return kinds, numbers


def _decimals(
    data: np.ndarray,
    positions: np.ndarray,
    classes: np.ndarray,
    runs: np.ndarray,
    values: np.ndarray,
    whole: np.ndarray,
    stop: np.ndarray,
    json: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens with signs, points, exponents or spaces, read along the only shape a number can take.

    That shape is ``[spaces] [sign] digits [. digits] [e [sign] digits] [spaces]``:
    each token's marks are matched in that order from its first one, and the token is
    a number only when the match ends exactly where its trailing spaces begin. The
    usual ``[-] digits [. digits]`` is matched for all tokens at once; the others
    (see :func:`_match`) only for the tokens it does not fit.
    """
    first = np.empty_like(stop)  # each token's first mark
    first[0] = 0
    first[1:] = stop[:-1] + 1
    shape = _Shape.usual(classes, runs, first, stop)
    others = np.flatnonzero(~shape.matched)
    if len(others):
        shape.update(others, _match(classes, runs, first[others], stop[others]))
    int_at, frac_at, exp_at, pointed = shape.int_at, shape.frac_at, shape.exp_at, shape.pointed
    int_len = runs[int_at]
    int_value = values[int_at]
    frac_len = np.where(pointed, runs[frac_at], 0)
    frac_value = np.where(pointed, values[frac_at], np.uint64(0))
    number = shape.matched & (int_len + frac_len > 0) & whole[int_at] & (~pointed | whole[frac_at])
    # the mantissa int_value * 10**frac_len + frac_value must fit in 19 digits (leading zeros do not count)
    long = np.flatnonzero(number & (int_len + frac_len > _MAX_DIGITS) & (int_value > 0))
    if len(long):
        int_digits = np.searchsorted(_POW10_INT, int_value[long], side="right")
        number[long[int_digits + frac_len[long] > _MAX_DIGITS]] = False
    mantissa = int_value * _POW10_INT[np.minimum(frac_len, _MAX_DIGITS)] + frac_value
    exponent = -frac_len
    exp_tokens = np.flatnonzero(shape.has_exp)
    if len(exp_tokens):
        at = exp_at[exp_tokens]
        exp_value = values[at]
        number[exp_tokens] &= (runs[at] > 0) & whole[at] & (exp_value < 10**9)
        exp_value = np.where(shape.exp_minus[exp_tokens], -exp_value.astype(np.int64), exp_value.astype(np.int64))
        exponent[exp_tokens] += exp_value
    negative = shape.minus
    if json:
        several = np.flatnonzero(int_len > 1)
        first_digit = data[positions[int_at[several]] - int_len[several]]
        number[several[first_digit == ord("0")]] = False  # no leading zeros
        number &= ~shape.plus & (int_len > 0) & (~pointed | (frac_len > 0))
        negative = negative & (pointed | shape.has_exp | (mantissa != 0))  # the integer -0 is the integer 0
    numbers, exact = _scaled(mantissa, exponent, number)
    np.negative(numbers, out=numbers, where=negative)
    kinds = np.full(len(stop), HARD, dtype=np.uint8)
    kinds[(shape.lead == stop) & (runs[stop] == 0)] = EMPTY
    kinds[exact] = NUMBER
    numbers[~exact] = np.nan
    return kinds, numbers, exact & (first == stop)


@dataclass(slots=True)
class _Shape:
    """Where each token's parts end: the marks after its integer, fraction and exponent digits."""

    lead: np.ndarray  # the first mark after leading spaces
    minus: np.ndarray
    plus: np.ndarray
    int_at: np.ndarray
    pointed: np.ndarray
    frac_at: np.ndarray
    has_exp: np.ndarray
    exp_minus: np.ndarray
    exp_at: np.ndarray
    matched: np.ndarray  # the token is that shape, all of it

    @classmethod
    def usual(cls, classes: np.ndarray, runs: np.ndarray, first: np.ndarray, stop: np.ndarray) -> _Shape:
        """``[-] digits [. digits]``, for every token."""
        minus = (classes[first] == _MINUS) & (runs[first] == 0)
        int_at = first + minus
        pointed = classes[int_at] == _DOT
        frac_at = int_at + pointed
        no = np.zeros(len(stop), dtype=bool)
        matched = frac_at == stop
        return cls(first.copy(), minus, no, int_at, pointed, frac_at, no.copy(), no.copy(), frac_at.copy(), matched)

    def update(self, index: np.ndarray, other: _Shape) -> None:
        """Take ``other``'s shapes for the tokens at ``index``."""
        for name in self.__slots__:
            getattr(self, name)[index] = getattr(other, name)


def _match(classes: np.ndarray, runs: np.ndarray, first: np.ndarray, stop: np.ndarray) -> _Shape:
    """The whole shape, spaces, ``+`` signs and exponents included, for some tokens."""
    lead = first.copy()
    while True:
        skip = (lead < stop) & (classes[lead] == _SPACE) & (runs[lead] == 0)
        if not skip.any():
            break
        lead += skip
    trail = stop.copy()  # where the number must end: the separator, or the first trailing space
    while True:
        back = (trail > lead) & (runs[trail] == 0) & (classes[trail - 1] == _SPACE)
        if not back.any():
            break
        trail -= back
    signed = ((classes[lead] == _MINUS) | (classes[lead] == _PLUS)) & (runs[lead] == 0)
    minus = signed & (classes[lead] == _MINUS)
    int_at = lead + signed
    pointed = classes[int_at] == _DOT
    frac_at = int_at + pointed
    has_exp = classes[frac_at] == _EXP
    sign_at = np.minimum(frac_at + 1, len(classes) - 1)
    exp_signed = has_exp & ((classes[sign_at] == _MINUS) | (classes[sign_at] == _PLUS)) & (runs[sign_at] == 0)
    exp_minus = exp_signed & (classes[sign_at] == _MINUS)
    exp_at = np.where(has_exp, frac_at + 1 + exp_signed, frac_at)
    matched = exp_at == trail
    return _Shape(lead, minus, signed & ~minus, int_at, pointed, frac_at, has_exp, exp_minus, exp_at, matched)


def _scaled(mantissa: np.ndarray, exponent: np.ndarray, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mantissa * 10**exponent`` rounded once, and where that was done exactly (see module doc)."""
    zero = numeric & (mantissa == 0)
    # an integer converts with one rounding whatever its size
    fast = numeric & ~zero & (((mantissa <= _TWO53) & (np.abs(exponent) <= 22)) | (exponent == 0))
    power = _POW10[np.minimum(np.abs(exponent), 22)]
    numbers = mantissa.astype(np.float64)
    shrink = exponent < 0
    np.divide(numbers, power, out=numbers, where=shrink)
    np.multiply(numbers, power, out=numbers, where=~shrink)
    numbers[zero] = 0.0
    exact = zero | fast
    if _POW10_LD is not None:
        wide = numeric & ~exact & (np.abs(exponent) <= 27)
        if wide.any():
            m = mantissa[wide].astype(np.longdouble)
            e = exponent[wide]
            p = _POW10_LD[np.abs(e)]
            result = np.where(e >= 0, m * p, m / p)
            rounded = result.astype(np.float64)
            # halfway between two doubles: twice the distance to the nearest is the gap to the next one
            back = rounded.astype(np.longdouble)
            toward = np.nextafter(rounded, np.where(result > back, np.inf, -np.inf)).astype(np.longdouble)
            halfway = (result - back) * 2 == toward - back
            ok = ~halfway & np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(np.float64).tiny)
            index = np.flatnonzero(wide)[ok]
            numbers[index] = rounded[ok]
            exact[index] = True
    return numbers, exact

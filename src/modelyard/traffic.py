"""Traffic profiles: which target model each request names, in order.

Shared by the load tester (``modelyard bench``) and the capacity planner
(``modelyard plan``), so both replay the same kinds of traffic:

* ``uniform``: every model equally likely;
* ``zipf:S``: the model of popularity rank *k* is requested with weight ``1/k**S``
  (``zipf`` alone is ``zipf:1.0``), ranks given to the models in a seeded random order;
* a trace file: one request per line, ``TARGET`` or ``TIMESTAMP TARGET`` (seconds,
  increasing); blank lines and ``#`` comments are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelyard.errors import ValidationError

__all__ = ["Distribution", "Trace", "parse_distribution", "read_trace", "synthetic_trace"]


@dataclass(frozen=True, slots=True)
class Distribution:
    """A popularity distribution over models: ``uniform`` or ``zipf`` with exponent ``s``."""

    kind: str
    s: float = 1.0

    def __str__(self) -> str:
        return "uniform" if self.kind == "uniform" else f"zipf:{self.s:g}"

    def weights(self, models: int) -> np.ndarray:
        """Normalised request probabilities of ``models`` models, most popular first."""
        if self.kind == "uniform":
            return np.full(models, 1.0 / models)
        weights: np.ndarray = 1.0 / np.arange(1, models + 1, dtype=np.float64) ** self.s
        return weights / float(weights.sum())


@dataclass(frozen=True)
class Trace:
    """A sequence of requests: ``requests[i]`` indexes ``targets``; ``times`` when replayed."""

    targets: list[str]
    requests: np.ndarray
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.requests)

    def names(self) -> list[str]:
        """The target model of every request."""
        return [self.targets[i] for i in self.requests]


def parse_distribution(text: str) -> Distribution:
    """``uniform``, ``zipf`` or ``zipf:S`` (S > 0)."""
    kind, _, exponent = text.strip().lower().partition(":")
    if kind == "uniform" and not exponent:
        return Distribution("uniform")
    if kind == "zipf":
        try:
            s = float(exponent) if exponent else 1.0
        except ValueError:
            s = -1.0
        if s > 0:
            return Distribution("zipf", s)
    raise ValidationError(f"Unknown distribution '{text}': use uniform, zipf or zipf:S with S > 0.")


def synthetic_trace(targets: list[str], requests: int, distribution: Distribution, seed: int = 0) -> Trace:
    """``requests`` requests over ``targets`` drawn from ``distribution``."""
    if not targets:
        raise ValidationError("There are no models to send traffic to.")
    if requests < 1:
        raise ValidationError("A trace needs at least one request.")
    rng = np.random.default_rng(seed)
    ranks = rng.permutation(len(targets))  # rank k -> which target is that popular
    drawn = rng.choice(len(targets), size=requests, p=distribution.weights(len(targets)))
    return Trace(list(targets), ranks[drawn].astype(np.int64))


def read_trace(path: Path) -> Trace:
    """A trace file (see module doc); a malformed line is a :class:`ValidationError` naming it."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"Cannot read trace '{path}': {exc}") from exc
    index: dict[str, int] = {}
    requests: list[int] = []
    times: list[float] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) > 2:
            raise ValidationError(f"{path}:{number}: expected 'TARGET' or 'TIMESTAMP TARGET', got '{line.strip()}'.")
        if len(fields) == 2:
            try:
                stamp = float(fields[0])
            except ValueError:
                raise ValidationError(f"{path}:{number}: '{fields[0]}' is not a timestamp in seconds.") from None
            if times and stamp < times[-1]:
                raise ValidationError(f"{path}:{number}: timestamps must not go back in time.")
            if len(times) != len(requests):
                raise ValidationError(f"{path}:{number}: either every line has a timestamp or none does.")
            times.append(stamp)
        elif times:
            raise ValidationError(f"{path}:{number}: either every line has a timestamp or none does.")
        requests.append(index.setdefault(fields[-1], len(index)))
    if not requests:
        raise ValidationError(f"Trace '{path}' has no requests.")
    return Trace(list(index), np.array(requests, dtype=np.int64), np.array(times) if times else None)

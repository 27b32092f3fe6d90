from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import ValidationError
from modelyard.traffic import parse_distribution, read_trace, synthetic_trace


def test_distributions() -> None:
    assert str(parse_distribution("zipf")) == "zipf:1"
    assert parse_distribution("zipf:1.3").s == 1.3
    assert parse_distribution("uniform").weights(4).tolist() == [0.25] * 4
    weights = parse_distribution("zipf:1").weights(3)
    assert weights[0] / weights[2] == pytest.approx(3)
    for bad in ("zipf:0", "zipf:-1", "zipf:x", "pareto", "uniform:2"):
        with pytest.raises(ValidationError):
            parse_distribution(bad)


def test_synthetic_zipf_is_skewed_and_seeded() -> None:
    targets = [f"m{i}" for i in range(100)]
    trace = synthetic_trace(targets, 20_000, parse_distribution("zipf:1.0"), seed=3)
    counts = np.bincount(trace.requests, minlength=100)
    assert counts.max() > 10 * np.median(counts)
    again = synthetic_trace(targets, 20_000, parse_distribution("zipf:1.0"), seed=3)
    assert np.array_equal(trace.requests, again.requests)
    assert trace.names()[:3] == [targets[i] for i in trace.requests[:3]]
    with pytest.raises(ValidationError):
        synthetic_trace([], 10, parse_distribution("uniform"))


def test_read_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("# replayed\n0.0 a.tar.gz\n0.5 b.tar.gz\n\n1.0 a.tar.gz  # again\n")
    trace = read_trace(path)
    assert trace.targets == ["a.tar.gz", "b.tar.gz"]
    assert trace.requests.tolist() == [0, 1, 0]
    assert trace.times is not None
    assert trace.times.tolist() == [0.0, 0.5, 1.0]
    path.write_text("a\nb\na\n")
    assert read_trace(path).times is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 a b\n", ":1: expected 'TARGET' or 'TIMESTAMP TARGET'"),
        ("x a\n", ":1: 'x' is not a timestamp"),
        ("1 a\n0.5 b\n", ":2: timestamps must not go back"),
        ("1 a\nb\n", ":2: either every line"),
        ("# nothing\n", "has no requests"),
    ],
)
def test_malformed_traces_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "trace.txt"
    path.write_text(text)
    with pytest.raises(ValidationError, match=message):
        read_trace(path)

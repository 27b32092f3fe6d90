"""The install scripts say what they do: no step runs for minutes without a word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent.parent / "scripts"
SLOW = re.compile(r"pip install|\bmypy\b|\bpytest\b|apt-get install")


@pytest.mark.parametrize("name", ["test.sh", "demo.sh"])
def test_every_slow_step_is_announced_and_pip_is_not_silenced(name: str) -> None:
    lines = [line.strip() for line in (SCRIPTS / name).read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    for index, line in enumerate(commands):
        if not SLOW.search(line) or line.startswith(("echo", "step")):
            continue
        assert "--quiet" not in line.split(), line
        assert "-q" not in line.split(), line
        before = commands[:index]
        announced = [c for c in before if c.startswith(('echo "==>', "step "))]
        assert announced, f"{name}: '{line}' runs before any step is announced"


def test_test_script_times_its_steps() -> None:
    text = (SCRIPTS / "test.sh").read_text()
    assert "done in $((SECONDS - step_began)) s" in text
    for what in ("pip install", "mypy", "pytest", "ruff"):
        assert re.search(rf'step "[^"]*".*\n(?:.*\n)*?.*{what}', text), what

"""The progress line: redrawn on a terminal, plain and sparse lines in a log."""

from __future__ import annotations

import io

from modelyard.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_start_every_few_seconds_and_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("Measuring", 10, stream=out, tty=False, every=5.0, clock=clock)
    for step in range(10):
        clock.now += 1.0
        progress.update(step + 1, note=f"m{step}")
    progress.close("done")
    lines = out.getvalue().splitlines()
    assert lines == [
        "Measuring 0/10 0.0 s",
        "Measuring 5/10 5.0 s  m4",
        "Measuring 10/10 10.0 s  m9",
        "Measuring 10/10 10.0 s  done",
    ]
    assert "\r" not in out.getvalue()


def test_note_lines_print_each_change_once() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("Endpoint e:", None, stream=out, tty=False, note_lines=True, clock=clock)
    for note in ("Creating", "Creating", "Creating", "InService"):
        clock.now += 0.5
        progress.update(0, note=note)
    progress.close()
    assert out.getvalue().splitlines() == [
        "Endpoint e: 0.0 s",
        "Endpoint e: 0.5 s  Creating",
        "Endpoint e: 2.0 s  InService",
    ]


def test_a_terminal_gets_one_redrawn_line_with_a_bar() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("Sending", 4, stream=out, tty=True, clock=clock)
    for done in range(1, 5):
        clock.now += 0.2
        progress.update(done)
    progress.close()
    text = out.getvalue()
    assert text.count("\n") == 1
    assert text.endswith("\n")
    assert "[############............]" in text  # half way
    assert text.rstrip().rsplit("\r", 1)[-1].startswith("Sending 4/4 0.8 s")


def test_a_spinner_when_the_total_is_unknown() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("Waiting", None, stream=out, tty=True, clock=clock)
    frames = set()
    for _ in range(8):
        clock.now += 0.125
        progress.tick()
        frames.add(out.getvalue().rsplit("\r", 1)[-1].split()[1])
    assert frames == {"|", "/", "-", "\\"}

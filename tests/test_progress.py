"""Progress outside a terminal: a plain line at most every LOG_INTERVAL_S seconds."""

from __future__ import annotations

import io

import pytest
import tqdm.std

from code.utils.progress import LOG_INTERVAL_S, ProgressBar


def test_a_log_file_gets_a_line_per_interval_not_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    log = io.StringIO()
    bar = ProgressBar(range(500), desc="evaluate", file=log)
    for i in bar:
        now[0] += 2.0  # an item every 2 s
        bar.set_postfix(item=i)  # as the trainer's loss: shown on the next line, not one more
    lines = log.getvalue().splitlines()
    # ~1000 s of fake time: one line per 30 s (tqdm's own 0.1 s would write one per item)
    assert 1000 / LOG_INTERVAL_S / 2 < len(lines) < 1000 / LOG_INTERVAL_S * 2
    assert "\r" not in log.getvalue() and all(line.startswith("evaluate:") for line in lines)
    assert "500/500" in lines[-1]


def test_a_terminal_keeps_the_redrawn_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = ProgressBar(range(3), file=screen)
    list(bar)
    assert bar.mininterval == 0.1 and screen.getvalue().count("\r") >= 2

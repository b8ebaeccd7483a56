"""The progress line: records, event-time position, rate and time left; drawn only on a terminal."""

from __future__ import annotations

import io

from app.backtest.progress import ProgressBar, render_progress

from .conftest import T0


def test_render_progress() -> None:
    line = render_progress(250_000, 1_000_000, T0, 5.0)
    assert line.startswith("[######..................]  25%  250,000/1,000,000 events")
    assert "at 2023-11-14T22:13:20.000Z" in line and "50,000 ev/s" in line and "ETA 0:00:15" in line
    assert render_progress(0, 10, None, 0.0) == "[........................]   0%  0/10 events"
    assert "ETA" not in render_progress(10, 10, None, 1.0)


def test_progress_bar__silent_off_a_terminal_and_clears_its_line() -> None:
    quiet = io.StringIO()
    bar = ProgressBar(100, stream=quiet)
    bar.update(50, None)
    bar.close()
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    ticks = iter([0.0, 1.0, 1.05, 2.0])
    bar = ProgressBar(100, stream=shown, force=True, clock=lambda: next(ticks))
    bar.update(10, None)
    bar.update(20, None)  # 50 ms later: not redrawn
    bar.update(100, None)
    bar.close()
    drawn = shown.getvalue().split("\r")
    assert [d.split("%")[0][-3:].strip() for d in drawn if "%" in d] == ["10", "100"]
    assert drawn[-1] == ""

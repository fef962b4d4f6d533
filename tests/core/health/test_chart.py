"""The daily chart reads on any window: its time axis never repeats a label."""

from __future__ import annotations

import itertools

import pytest

from core.health.analysis import Window, chart_figure

START = 1_800_000_000.0


def window(seconds: float, samples: int = 40) -> Window:
    step = seconds / samples
    rows = [
        {"at": START + i * step, "cpu_percent": 10.0 + i % 7, "mem_percent": 40.0, "swap_percent": 0.0,
         "load1": 0.5, "cpu_cores": 2, "disks": [{"m": "/", "p": 50.0}]}
        for i in range(samples + 1)
    ]  # fmt: skip
    return Window(host="box", start=START, end=START + seconds, samples=rows)


@pytest.mark.parametrize("seconds", [5 * 60, 30 * 60, 3 * 3600, 24 * 3600, 3 * 86400, 14 * 86400])
def test_each_time_label_appears_once(seconds: float) -> None:
    fig = chart_figure(window(seconds))
    fig.canvas.draw()
    load_ax = fig.axes[3]
    labels = [t.get_text() for t in load_ax.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3, labels
    assert all(a != b for a, b in itertools.pairwise(labels)), f"{seconds / 3600:g} h window: {labels}"
    if seconds <= 86400:  # within a day every tick has a label of its own
        assert len(labels) == len(set(labels)), f"repeated labels on a {seconds / 3600:g} h window: {labels}"

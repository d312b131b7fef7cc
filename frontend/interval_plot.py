"""Server-rendered SVG geometry for interval plots (ratings with their 95% intervals)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, ROW, LEFT, RIGHT, TOP = 640, 28, 170, 20, 24


@dataclass(frozen=True)
class IntervalRow:
    label: str
    y: float
    x: float
    x_low: float
    x_high: float
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class IntervalPlot:
    width: int
    height: int
    rows: list[IntervalRow]
    ticks: list[tuple[float, str]]
    axis_y: float


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = max(high - low, 1e-9)
    step = 10 ** math.floor(math.log10(span / count))
    for multiple in (1, 2, 5, 10):
        if span / (step * multiple) <= count:
            step *= multiple
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 1)]


def interval_plot(items: Sequence[tuple[str, float, float, float]]) -> IntervalPlot:
    """Rows of (label, value, low, high) laid out on one horizontal axis covering every interval."""
    low = min(item[2] for item in items)
    high = max(item[3] for item in items)
    pad = max((high - low) * 0.05, 1.0)
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    rows = [
        IntervalRow(label, TOP + i * ROW, x(value), x(lo), x(hi), value, lo, hi)
        for i, (label, value, lo, hi) in enumerate(items)
    ]
    axis_y = TOP + len(items) * ROW
    ticks = [(x(t), f"{t:g}") for t in _nice_ticks(low, high)]
    return IntervalPlot(WIDTH, int(axis_y + 30), rows, ticks, axis_y)

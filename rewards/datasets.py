"""What a dataset file holds (no Django): summary figures of Pick-a-Pic rows, and the streamed scan that
validates a whole file row by row without holding it in memory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from feedback.pickapic import PickapicRow, iter_parquet

ProgressCallback = Callable[[int, int], None]
PROGRESS_EVERY_ROWS = 256


class DatasetFileError(ValueError):
    """A dataset file that cannot be imported; the message says why and names no server path."""


@dataclass
class DatasetStatsCounter:
    """Running summary of rows seen one at a time (what :func:`dataset_stats` returns for a list)."""

    rows: int = 0
    ties: int = 0
    both_bad: int = 0
    prompts: set[str] = field(default_factory=set)
    annotators: set[int] = field(default_factory=set)
    models: set[str] = field(default_factory=set)

    def add(self, row: PickapicRow) -> None:
        self.rows += 1
        self.ties += row.label_0 == row.label_1
        self.both_bad += bool(row.both_bad)
        self.prompts.add(row.caption)
        self.annotators.add(row.user_id)
        self.models.update((row.model_0, row.model_1))

    def stats(self) -> dict:
        return {
            "rows": self.rows,
            "prompts": len(self.prompts),
            "decisive": self.rows - self.ties,
            "ties": self.ties,
            "both_bad": self.both_bad,
            "annotators": len(self.annotators),
            "models": sorted(self.models),
        }


def dataset_stats(rows: Iterable[PickapicRow]) -> dict:
    """Rows, prompts, decisive rows, ties (both-bad among them), annotators and generator names."""
    counter = DatasetStatsCounter()
    for row in rows:
        counter.add(row)
    return counter.stats()


def without_paths(text: str, *paths: str | os.PathLike[str], label: str = "the file") -> str:
    """``text`` with every given path (and the folder holding it) replaced by ``label`` or ``<server>``."""
    for path in paths:
        path = os.fspath(path)
        if path:
            text = text.replace(path, label)
    for path in paths:
        folder = os.path.dirname(os.fspath(path))
        if len(folder) > 1:
            text = text.replace(folder, "<server>")
    return text


def scan_pickapic(
    path: str | os.PathLike[str],
    *,
    label: str = "the file",
    check_images: bool = True,
    on_progress: ProgressCallback | None = None,
) -> dict:
    """Validate every row of a Pick-a-Pic Parquet file, a batch at a time, and return its :func:`dataset_stats`.

    ``on_progress(rows_done, rows_total)`` is called every few hundred rows (it may raise to stop the scan).
    Any problem raises :class:`DatasetFileError` whose message starts with ``label`` and never holds ``path``.
    """
    source = Path(path)
    counter = DatasetStatsCounter()
    try:
        reader = iter_parquet(source, check_images=check_images, label=label)
        total = reader.num_rows
        for row in reader:
            counter.add(row)
            if on_progress is not None and reader.rows_read % PROGRESS_EVERY_ROWS == 0:
                on_progress(reader.rows_read, total)
    except (ValueError, OSError) as exc:
        message = without_paths(str(exc), source, source.resolve(), label=label)
        if not message.startswith(label):
            message = f"{label}: {message}"
        raise DatasetFileError(f"Not a readable Pick-a-Pic Parquet file: {message}") from None
    if counter.rows == 0:
        raise DatasetFileError(f"{label} holds no rows.")
    if on_progress is not None:
        on_progress(counter.rows, total)
    return counter.stats()

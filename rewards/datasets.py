"""What a dataset file holds (no Django): summary figures of Pick-a-Pic rows, and the streamed scan that
validates a whole file row by row without holding it in memory."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from feedback.criteria import CriteriaError, check_criterion_key
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
    criteria: Counter[str] = field(default_factory=Counter)

    def add(self, row: PickapicRow) -> None:
        self.rows += 1
        self.ties += row.label_0 == row.label_1
        self.both_bad += bool(row.both_bad)
        self.prompts.add(row.caption)
        self.annotators.add(row.user_id)
        self.models.update((row.model_0, row.model_1))
        self.criteria[row.criterion] += 1

    def stats(self) -> dict:
        return {
            "rows": self.rows,
            "prompts": len(self.prompts),
            "decisive": self.rows - self.ties,
            "ties": self.ties,
            "both_bad": self.both_bad,
            "annotators": len(self.annotators),
            "models": sorted(self.models),
            "criteria": dict(sorted(self.criteria.items())),
        }


def check_dataset_criterion(criterion: str) -> str:
    """``criterion`` if it is empty (every row) or a valid criterion key; else :class:`DatasetFileError`."""
    if criterion:
        try:
            check_criterion_key(criterion)
        except CriteriaError as exc:
            raise DatasetFileError(str(exc)) from None
    return criterion


def rows_of_criterion(rows: Iterable[PickapicRow], criterion: str) -> list[PickapicRow]:
    """The rows that answer ``criterion`` (every row when it is empty)."""
    return [row for row in rows if not criterion or row.criterion == criterion]


def several_criteria(stats: dict, criterion: str) -> list[str]:
    """The criteria a dataset mixes (more than one, and no ``criterion`` chosen), else an empty list: a reward
    model learns one preference, so training asks for one criterion."""
    criteria = sorted(stats.get("criteria") or {})
    return criteria if not criterion and len(criteria) > 1 else []


def dataset_stats(rows: Iterable[PickapicRow]) -> dict:
    """Rows, prompts, decisive rows, ties (both-bad among them), annotators, generator names and rows per
    criterion."""
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
    criterion: str = "",
) -> dict:
    """Validate every row of a Pick-a-Pic Parquet file, a batch at a time, and return its :func:`dataset_stats`.

    With ``criterion`` the figures count that question's rows only (``criteria`` still counts the whole file's),
    and a file without any row of it is a :class:`DatasetFileError`.

    ``on_progress(rows_done, rows_total)`` is called every few hundred rows (it may raise to stop the scan).
    Any problem raises :class:`DatasetFileError` whose message starts with ``label`` and never holds ``path``.
    """
    source = Path(path)
    counter, in_file = DatasetStatsCounter(), Counter()
    try:
        reader = iter_parquet(source, check_images=check_images, label=label)
        total = reader.num_rows
        for row in reader:
            in_file[row.criterion] += 1
            if not criterion or row.criterion == criterion:
                counter.add(row)
            if on_progress is not None and reader.rows_read % PROGRESS_EVERY_ROWS == 0:
                on_progress(reader.rows_read, total)
    except (ValueError, OSError) as exc:
        message = without_paths(str(exc), source, source.resolve(), label=label)
        if not message.startswith(label):
            message = f"{label}: {message}"
        raise DatasetFileError(f"Not a readable Pick-a-Pic Parquet file: {message}") from None
    if counter.rows == 0 and criterion and in_file:
        held = ", ".join(sorted(in_file))
        raise DatasetFileError(f"{label} holds no votes on the criterion {criterion!r} (it holds: {held}).")
    if counter.rows == 0:
        raise DatasetFileError(f"{label} holds no rows.")
    if on_progress is not None:
        on_progress(counter.rows, total)
    return {**counter.stats(), "criteria": dict(sorted(in_file.items()))}

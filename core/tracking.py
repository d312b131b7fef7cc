"""Optional experiment tracking through accelerate's trackers (no Django here).

Off by default. With the ``EXPERIMENT_TRACKER`` setting (env) ``tensorboard`` (the package comes with the
``tracking`` extra: ``pip install -e '.[tracking]'``), every metric point a trainer run records (``finetune``,
``reward_train``, ``preference_tune``: :data:`TRACKED_KINDS`) is also written by accelerate's
``TensorBoardTracker`` to ``<logging_dir>/run-<id>/`` while the run goes (``tensorboard --logdir var/tracking``
compares runs live), and the folder is kept with the run as the artifact ``tensorboard.zip`` when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard",)
TRACKED_KINDS = frozenset({"finetune", "reward_train", "preference_tune"})
ARTIFACT = "tensorboard.zip"


class TrackerUnavailable(RuntimeError):
    """The configured tracker's package is not installed."""


def check_tracker_name(name: str) -> str:
    """``name`` if it is empty (off) or a known tracker; else a ``ValueError`` naming the choices."""
    if name and name not in TRACKERS:
        raise ValueError(f"EXPERIMENT_TRACKER={name!r}: use one of {', '.join(TRACKERS)}, or leave it empty (off).")
    return name


class RunTracker:
    """A run's tracker: ``log(step, values)`` each metric point, ``finish()`` at the end; ``folder`` holds its files."""

    def __init__(self, name: str, logging_dir: str | Path, run_name: str) -> None:
        check_tracker_name(name)
        from accelerate.tracking import TensorBoardTracker
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise TrackerUnavailable(
                "EXPERIMENT_TRACKER=tensorboard needs the tensorboard package: pip install -e '.[tracking]'"
            )
        self.folder = Path(logging_dir) / run_name
        self._tracker = TensorBoardTracker(run_name, str(logging_dir))
        self._tracker.start()

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        numbers = {key: float(value) for key, value in values.items() if isinstance(value, int | float)}
        if numbers:
            self._tracker.log(numbers, step=step)

    def finish(self) -> None:
        self._tracker.finish()

"""What a job sees of the platform while it runs. No Django imports: ML code depends on this only.

A job is a function ``(config, ctx: JobContext) -> dict``. It reports through ``ctx`` and checks
``ctx.should_stop()`` between steps; when that is true it checkpoints and raises :class:`JobCancelled`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class JobCancelled(Exception):
    """Raised by a job that stopped because a cancel was requested (or its lease was lost)."""


class AttemptSuperseded(JobCancelled):
    """This attempt no longer holds its run (another worker took it over, or the run ended): stop, write nothing.

    Every write of a job is checked against the run's current attempt in the database; a job that sees this
    exception must let it propagate.
    """


class JobFailed(Exception):
    """A failure with a message meant for the user (bad checkpoint, reward function error...)."""


class JobContext(Protocol):
    """The platform side of a running job. Its writes raise :class:`AttemptSuperseded` once another attempt
    holds the run."""

    run_id: int
    attempt: int

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Record how far the job is, 0..1, with an optional short message."""

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Record metric values at ``step``; logging the same (key, step) again overwrites it."""

    def should_stop(self) -> bool:
        """True once a cancel was requested or another attempt took this run over."""

    def save_checkpoint(self, payload: bytes) -> None:
        """Persist the job's resume state (replaces the previous checkpoint)."""

    def load_checkpoint(self) -> bytes | None:
        """The newest checkpoint of this run from any attempt, or None."""

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Store a named output file of the run (saving the same name again replaces it)."""


class NullJobContext:
    """A JobContext that records nothing: for scripts, notebooks and the non-main processes of a run."""

    run_id = 0
    attempt = 1

    def report_progress(self, fraction: float, message: str = "") -> None:
        pass

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def save_checkpoint(self, payload: bytes) -> None:
        pass

    def load_checkpoint(self) -> bytes | None:
        return None

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        pass

"""The run state machine: states, legal transitions, and the error for an illegal one.

    queued ──> running ──> succeeded | failed
       │          │
       │          └──> cancelling ──> cancelled | succeeded | failed
       └──> cancelled | failed

A redelivered task may re-claim a ``running`` run whose heartbeat went stale; that is a new attempt,
not a state change.
"""

from __future__ import annotations

from django.db import models


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
LIVE_STATES = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.CANCELLING})

TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.FAILED}),
    RunState.RUNNING: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLING}),
    RunState.CANCELLING: frozenset({RunState.CANCELLED, RunState.SUCCEEDED, RunState.FAILED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A state change the run state machine does not allow (the API answers 409)."""

    def __init__(self, run_id: int, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (the run has finished)"
        super().__init__(f"Run {run_id} is {current}; it cannot become {target}. Allowed next states: {allowed}.")
        self.run_id, self.current, self.target = run_id, current, target


def check_transition(run_id: int, current: str, target: str) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(run_id, current, target)

"""Events other apps subscribe to (Django signals), so core never imports them.

``run_finished`` is sent once a run's switch to a terminal state (succeeded, failed, cancelled) has
committed, in whichever process made the switch, with ``run`` and ``state``. Receivers must be quick
and must not raise: a failure is logged and never changes the run.

``periodic_check`` is sent by every worker every ``RUN_REQUEUE_INTERVAL_SECONDS`` (see ``core.signals``).
Its receivers reconcile what an event receiver may have missed (it failed, or its process died between
the commit and the event), e.g. a campaign still waiting for a run that has finished. They must be
idempotent and quick; a failure is logged and retried at the next period.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

run_finished = Signal()
periodic_check = Signal()


def send_run_finished(run, state: str) -> None:
    """Send :data:`run_finished`; a receiver's exception is logged, not raised."""
    for receiver, result in run_finished.send_robust(sender=type(run), run=run, state=state):
        if isinstance(result, Exception):
            log.error("run_finished receiver %r failed for run %s", receiver, run.pk, exc_info=result)


def send_periodic_check() -> None:
    """Send :data:`periodic_check`; a receiver's exception is logged, not raised."""
    for receiver, result in periodic_check.send_robust(sender=None):
        if isinstance(result, Exception):
            log.error("periodic_check receiver %r failed", receiver, exc_info=result)

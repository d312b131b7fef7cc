"""Events other apps subscribe to (Django signals), so core never imports them.

``run_finished`` is sent once a run's switch to a terminal state (succeeded, failed, cancelled) has
committed, in whichever process made the switch, with ``run`` and ``state``. Receivers must be quick
and must not raise: a failure is logged and never changes the run.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

run_finished = Signal()


def send_run_finished(run, state: str) -> None:
    """Send :data:`run_finished`; a receiver's exception is logged, not raised."""
    for receiver, result in run_finished.send_robust(sender=type(run), run=run, state=state):
        if isinstance(result, Exception):
            log.error("run_finished receiver %r failed for run %s", receiver, run.pk, exc_info=result)

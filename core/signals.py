"""Worker hooks: every worker watches for runs whose worker died and sends them out again.

A daemon thread in the worker's main process (which never touches CUDA) calls
:func:`core.services.runs_requeue_stale` at start-up and then every ``RUN_REQUEUE_INTERVAL_SECONDS``,
so a run left behind by a SIGKILLed or lost worker is resumed as long as any worker is alive, on
any broker (the filesystem transport cannot redeliver unacknowledged messages itself). The same pass
sends :data:`core.events.periodic_check`, by which other apps reconcile what an event receiver missed.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

log = logging.getLogger(__name__)
_stop = threading.Event()


def worker_periodic_pass() -> None:
    """One pass of the watcher: re-dispatch stale runs, then let other apps reconcile (``periodic_check``)."""
    from core import services
    from core.events import send_periodic_check

    try:
        requeued = services.runs_requeue_stale()
        if requeued:
            log.warning("re-dispatched stale runs: %s", requeued)
    except Exception:  # never let the watcher die on a database hiccup
        log.exception("stale-run check failed")
    send_periodic_check()


def _watch_stale_runs(interval: float) -> None:
    from django.db import connection

    try:
        while True:
            worker_periodic_pass()
            connection.close_if_unusable_or_obsolete()  # a broken connection is replaced at the next pass
            if _stop.wait(interval):
                return
    finally:
        connection.close()


@worker_ready.connect
def start_stale_run_watcher(sender=None, **kwargs) -> None:
    from django.conf import settings

    _stop.clear()
    thread = threading.Thread(
        target=_watch_stale_runs, args=(settings.RUN_REQUEUE_INTERVAL_SECONDS,), name="stale-run-watcher", daemon=True
    )
    thread.start()


@worker_shutdown.connect
def stop_stale_run_watcher(sender=None, **kwargs) -> None:
    _stop.set()

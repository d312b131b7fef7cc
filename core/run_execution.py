"""Executing a claimed run on a worker: the database-backed JobContext, its heartbeat, and the
outcome (succeeded, failed with a readable error, or cancelled).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from core import run_kinds, services, tracking
from core.devices import limit_torch_threads
from core.jobs import AttemptSuperseded, JobCancelled, JobFailed
from core.models import Run
from core.run_states import RunState
from core.storage import zip_directory

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DbJobContext:
    """A :class:`core.jobs.JobContext` that writes to the Run row, fenced by the attempt number.

    Every write is checked in the database (see :mod:`core.services`); a write refused because another
    attempt took the run over raises :class:`~core.jobs.AttemptSuperseded`, which stops the job, and so
    does every later write. A background thread refreshes the heartbeat so that long steps (a big GPU
    batch) do not look like a dead worker, and notices cancel requests and lost leases. When heartbeats
    keep failing (the database is unreachable) for longer than the stale timeout, another worker may
    have taken the run over: the attempt counts its lease as lost and stops.
    """

    def __init__(self, run: Run, attempt: int) -> None:
        self.run = run
        self.run_id = run.pk
        self.attempt = attempt
        self._stop_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._heartbeat_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_good_beat = time.monotonic()
        self.tracker: tracking.RunTracker | None = None  # EXPERIMENT_TRACKER: metrics go there too

    # heartbeat ---------------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._heartbeat_loop, name=f"run-{self.run_id}-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._heartbeat_done.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _heartbeat_loop(self) -> None:
        try:
            while not self._heartbeat_done.wait(settings.RUN_HEARTBEAT_SECONDS):
                if not self._beat():
                    connection.close_if_unusable_or_obsolete()  # reconnect on the next beat if it broke
                if self._lease_lost.is_set():
                    return  # the run belongs to another attempt now
        finally:
            connection.close()

    def _beat(self) -> bool:
        """Refresh the heartbeat; False when the database could not be reached (the next beat retries)."""
        try:
            state = services.run_heartbeat(run_id=self.run_id, attempt=self.attempt)
        except Exception:  # the database is unreachable (or worse): logged, and counted as a missed beat
            silent = time.monotonic() - self._last_good_beat
            log.exception("heartbeat of run %s attempt %s failed (%.1f s since the last one)", *self._ids, silent)
            if silent > settings.RUN_STALE_AFTER_SECONDS:
                log.error(
                    "run %s attempt %s: no heartbeat for %.1f s; it may have been taken over, so it stops",
                    *self._ids,
                    silent,
                )
                self._lease_lost.set()
            return False
        self._last_good_beat = time.monotonic()
        if state is None:
            log.warning("run %s attempt %s was superseded; it stops", *self._ids)
            self._lease_lost.set()
        elif state == RunState.CANCELLING:
            self._stop_requested.set()
        return True

    @property
    def _ids(self) -> tuple[int, int]:
        return self.run_id, self.attempt

    def _write(self, write, **kwargs):
        """Call a fenced service write; once the lease is lost, nothing is written and the job is stopped."""
        if self._lease_lost.is_set():
            raise AttemptSuperseded(f"run {self.run_id}: attempt {self.attempt} lost the run; it writes nothing")
        try:
            written = write(attempt=self.attempt, **kwargs)
        except AttemptSuperseded:
            self._lease_lost.set()
            raise
        self._last_good_beat = time.monotonic()  # a fenced write refreshed the heartbeat too
        return written

    # JobContext --------------------------------------------------------------------------------
    def report_progress(self, fraction: float, message: str = "") -> None:
        self._write(services.run_report_progress, run_id=self.run_id, fraction=fraction, message=message)

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._write(services.metrics_log, run_id=self.run_id, step=step, values=values)
        if self.tracker is not None:
            self.tracker.log(step, values)

    def should_stop(self) -> bool:
        if not (self._stop_requested.is_set() or self._lease_lost.is_set()):
            self._beat()
        return self._stop_requested.is_set() or self._lease_lost.is_set()

    def save_checkpoint(self, payload: bytes) -> None:
        self._write(services.checkpoint_save, run=self.run, payload=payload)

    def load_checkpoint(self) -> bytes | None:
        return services.checkpoint_load(run_id=self.run_id)

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        self._write(services.artifact_save, run=self.run, name=name, data=data, kind=kind, metadata=metadata)

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost.is_set()


def _readable_error(exc: BaseException) -> str:
    if isinstance(exc, JobFailed):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"The run exceeded its time limit of {settings.RUN_SOFT_TIME_LIMIT} seconds."
    tail = "".join(traceback.format_exception(exc, limit=-8))
    return f"{type(exc).__name__}: {exc}\n\n{tail}"


def run_execute(*, run_id: int, worker: str | None = None) -> str:
    """Claim ``run_id`` and execute it to an outcome. Returns what happened, for logs and tests.

    (Celery's Django fix-up closes stale database connections around each task.)
    """
    claim = services.run_claim(run_id=run_id, worker=worker or worker_identity())
    if claim is None:
        return "skipped"
    run, attempt = claim.run, claim.attempt
    limit_torch_threads(settings.WORKER_TORCH_THREADS)
    ctx = DbJobContext(run, attempt)
    ctx.start_heartbeat()
    began = time.monotonic()
    try:
        ctx.tracker = _open_tracker(run)
        result = run_kinds.get(run.kind).executor()(run, ctx)
    except AttemptSuperseded as exc:
        log.warning("%s; leaving the run to the new attempt", exc)
        outcome = "superseded"
    except JobCancelled as exc:
        note = str(exc)
        outcome = _finish(ctx, lambda: services.run_mark_cancelled(run_id=run_id, attempt=attempt, note=note))
    except Exception as exc:
        log.exception("run %s failed", run_id)
        error = _readable_error(exc)
        outcome = _finish(ctx, lambda: services.run_fail(run_id=run_id, attempt=attempt, error=error))
    else:
        result = {**(result or {}), "seconds": round(time.monotonic() - began, 3)}
        outcome = _finish(ctx, lambda: services.run_succeed(run_id=run_id, attempt=attempt, result=result))
    finally:
        ctx.stop_heartbeat()
        if ctx.tracker is not None:  # a superseded attempt's: closed, its files left to the new attempt
            ctx.tracker.finish()
    return outcome


def _open_tracker(run: Run) -> tracking.RunTracker | None:
    """The run's tracker when ``EXPERIMENT_TRACKER`` is set and the run is a trainer's (else None)."""
    if not settings.EXPERIMENT_TRACKER or run.kind not in tracking.TRACKED_KINDS:
        return None
    return tracking.RunTracker(settings.EXPERIMENT_TRACKER, settings.TRACKING_DIR, f"run-{run.pk}")


def _keep_tracker_files(ctx: DbJobContext) -> None:
    """Close the run's tracker and keep its folder as the artifact ``tensorboard.zip`` (before the outcome is
    written: artifacts are fenced by the attempt)."""
    tracker, ctx.tracker = ctx.tracker, None
    if tracker is None:
        return
    tracker.finish()
    if tracker.folder.is_dir() and not ctx.lease_lost:
        ctx.save_artifact(tracking.ARTIFACT, zip_directory(tracker.folder), kind="tracker_logs")


def _finish(ctx: DbJobContext, write) -> str:
    try:
        _keep_tracker_files(ctx)
    except AttemptSuperseded:
        return "superseded"
    except Exception:  # the outcome matters more than the tracker's copy
        log.exception("run %s: could not keep the tracker's files", ctx.run_id)
    if ctx.lease_lost:
        log.warning(
            "run %s: attempt %s lost its lease; leaving the outcome to the new attempt", ctx.run_id, ctx.attempt
        )
        return "superseded"
    try:
        return write().state
    except AttemptSuperseded:
        return "superseded"

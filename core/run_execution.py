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

from core import run_kinds, services
from core.jobs import JobCancelled, JobFailed
from core.models import Run
from core.run_states import RunState

log = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class DbJobContext:
    """A :class:`core.jobs.JobContext` that writes to the Run row, fenced by the attempt number.

    A background thread refreshes the heartbeat so that long steps (a big GPU batch) do not look
    like a dead worker, and notices cancel requests and lost leases.
    """

    def __init__(self, run: Run, attempt: int) -> None:
        self.run = run
        self.run_id = run.pk
        self.attempt = attempt
        self._stop_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._heartbeat_done = threading.Event()
        self._thread: threading.Thread | None = None

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
                self._beat()
        finally:
            connection.close()

    def _beat(self) -> None:
        try:
            state = services.run_heartbeat(run_id=self.run_id, attempt=self.attempt)
        except Exception:  # a database hiccup must not kill the job; the next beat retries
            log.exception("heartbeat of run %s failed", self.run_id)
            return
        if state is None:
            self._lease_lost.set()
        elif state == RunState.CANCELLING:
            self._stop_requested.set()

    # JobContext --------------------------------------------------------------------------------
    def report_progress(self, fraction: float, message: str = "") -> None:
        try:
            services.run_report_progress(run_id=self.run_id, attempt=self.attempt, fraction=fraction, message=message)
        except services.LeaseLost:
            self._lease_lost.set()

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        if not self._lease_lost.is_set():
            services.metrics_log(run_id=self.run_id, step=step, values=values)

    def should_stop(self) -> bool:
        if not (self._stop_requested.is_set() or self._lease_lost.is_set()):
            self._beat()
        return self._stop_requested.is_set() or self._lease_lost.is_set()

    def save_checkpoint(self, payload: bytes) -> None:
        if not self._lease_lost.is_set():
            services.checkpoint_save(run=self.run, payload=payload)

    def load_checkpoint(self) -> bytes | None:
        return services.checkpoint_load(run_id=self.run_id)

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        if not self._lease_lost.is_set():
            services.artifact_save(run=self.run, name=name, data=data, kind=kind, metadata=metadata)

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
    ctx = DbJobContext(run, attempt)
    ctx.start_heartbeat()
    began = time.monotonic()
    try:
        result = run_kinds.get(run.kind).executor()(run, ctx)
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
    return outcome


def _finish(ctx: DbJobContext, write) -> str:
    if ctx.lease_lost:
        log.warning(
            "run %s: attempt %s lost its lease; leaving the outcome to the new attempt", ctx.run_id, ctx.attempt
        )
        return "superseded"
    try:
        return write().state
    except services.LeaseLost:
        return "superseded"

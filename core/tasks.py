"""Celery tasks: thin wrappers that pass ids to services."""

from __future__ import annotations

from celery import shared_task

from core import services
from core.run_execution import run_execute


@shared_task(name="core.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> str:
    """Execute a run of any kind to an outcome (claim, run, finish)."""
    return run_execute(run_id=run_id)


@shared_task(name="core.requeue_stale_runs")
def requeue_stale_runs() -> list[int]:
    """Re-dispatch runs whose worker stopped sending heartbeats."""
    return services.runs_requeue_stale()

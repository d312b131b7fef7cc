"""Executors of core's run kinds: turn a Run row into a plain config and call the job."""

from __future__ import annotations

from core.diagnostic import DiagnosticConfig, run_diagnostic
from core.jobs import JobContext
from core.models import Run


def diagnostic(run: Run, ctx: JobContext) -> dict:
    return run_diagnostic(DiagnosticConfig(**run.config), ctx)

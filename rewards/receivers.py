"""Reactions of the rewards app to events of other apps."""

from __future__ import annotations

from django.dispatch import receiver

from core.events import run_finished
from rewards import services


@receiver(run_finished, dispatch_uid="rewards.dataset_import_finished")
def dataset_import_finished(sender, run, state: str, **kwargs) -> None:
    """An import run ended without importing (cancelled, even before it started; crashed): its dataset failed."""
    if run.kind == "dataset_import":
        services.dataset_import_run_finished(run=run)

"""Reactions of the feedback app to events of other apps."""

from __future__ import annotations

from django.dispatch import receiver

from core.events import run_finished
from feedback import services


@receiver(run_finished, dispatch_uid="feedback.open_prepared_campaigns")
def open_prepared_campaigns(sender, run, state: str, **kwargs) -> None:
    """A generation run that campaigns waited for has ended: open them (or return them to draft)."""
    if run.kind == "generate":
        services.campaign_preparation_finished(run=run)

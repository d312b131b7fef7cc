"""Reactions of the feedback app to events of other apps."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from core.events import periodic_check, run_finished
from feedback import services

log = logging.getLogger(__name__)


@receiver(run_finished, dispatch_uid="feedback.open_prepared_campaigns")
def open_prepared_campaigns(sender, run, state: str, **kwargs) -> None:
    """A generation run that campaigns waited for has ended: open them (or return them to draft)."""
    if run.kind == "generate":
        services.campaign_preparation_finished(run=run)


@receiver(periodic_check, dispatch_uid="feedback.reconcile_preparing_campaigns")
def reconcile_preparing_campaigns(sender, **kwargs) -> None:
    """Campaigns whose generation run ended without the event above taking effect: open them or return them
    to draft with the reason."""
    settled = services.campaigns_reconcile_preparing()
    if settled:
        log.warning("reconciled campaigns left preparing: %s", [(c.pk, c.status) for c in settled])

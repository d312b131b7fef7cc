"""Reactions of the rewards app to events of other apps."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from core.events import periodic_check, run_finished
from rewards import services

log = logging.getLogger(__name__)


@receiver(run_finished, dispatch_uid="rewards.dataset_import_finished")
def dataset_import_finished(sender, run, state: str, **kwargs) -> None:
    """An import run ended without importing (cancelled, even before it started; crashed): its dataset failed."""
    if run.kind == "dataset_import":
        services.dataset_import_run_finished(run=run)


@receiver(run_finished, dispatch_uid="rewards.campaign_refit_finished")
def campaign_refit_finished(sender, run, state: str, **kwargs) -> None:
    """A campaign's refit ended (succeeded, failed or cancelled): the campaign may be refitted again."""
    if run.kind == "selection_refit":
        services.campaign_refit_finished(run=run)


@receiver(periodic_check, dispatch_uid="rewards.campaign_refits")
def campaign_refits(sender, **kwargs) -> None:
    """Release refits whose run ended unnoticed, then start the refits campaigns are due (``refit_every`` valid
    votes since the last one; a new uncertainty campaign at once). Off the vote's path: one query per period."""
    released = services.campaign_refits_reconcile()
    if released:
        log.warning("released %d campaign refits whose run had ended", released)
    started = services.campaign_refits_start_due()
    if started:
        log.info("campaign refits started: %s", [(r.campaign_id, r.run_id) for r in started])

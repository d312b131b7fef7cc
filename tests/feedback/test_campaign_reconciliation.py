"""Campaigns left ``preparing`` after their generation run ended (the ``run_finished`` receiver failed, or its
process died before the event) are settled by the periodic check every worker runs."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import OperationalError

from core import services as run_services
from core.models import Run
from core.run_execution import run_execute
from core.signals import worker_periodic_pass
from feedback import services
from generators import services as generator_services
from generators.models import ModelVersion, PromptSet

pytestmark = pytest.mark.django_db


def _waiting_campaign(name: str, version: ModelVersion, prompt_set: PromptSet):
    campaign = services.campaign_create(name=name, purpose="collect", prompt_set=prompt_set, model_versions=[version])
    assert campaign.status == "preparing" and campaign.preparing_run_id is not None
    return campaign


@pytest.fixture
def unreachable_checkpoint(users):
    version = generator_services.base_model_register(name="empty", source="org/empty").versions.get()
    prompts = generator_services.prompt_set_create(name="some", split="train", prompts=["a red square"])
    return version, prompts


def test_a_campaign_whose_receiver_failed_is_opened_by_the_periodic_check(
    users, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    texts = list(PromptSet.objects.get(name="sandbox-train").prompts.values_list("text", flat=True)[:2])
    campaign = _waiting_campaign(
        "fresh", version, generator_services.prompt_set_create(name="two", split="train", prompts=texts)
    )

    def database_went_away(**kwargs):
        raise OperationalError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(services, "campaign_preparation_finished", database_went_away)
        with django_capture_on_commit_callbacks(execute=True):
            assert run_execute(run_id=campaign.preparing_run_id, worker="inline") == "succeeded"
    campaign.refresh_from_db()
    assert campaign.status == "preparing"  # the receiver failed (and was logged); nothing else would open it

    worker_periodic_pass()

    campaign.refresh_from_db()
    assert campaign.status == "open" and campaign.pairs.count() == 2 and campaign.status_note == ""


def test_a_campaign_whose_run_failed_unnoticed_returns_to_draft_with_the_reason(
    unreachable_checkpoint, engineer_client
):
    campaign = _waiting_campaign("pending", *unreachable_checkpoint)
    run_services.run_fail(run_id=campaign.preparing_run_id, attempt=None, error="no such checkpoint\nTraceback ...")
    # The process died before its on-commit event: no receiver ran.
    campaign.refresh_from_db()
    assert campaign.status == "preparing"

    worker_periodic_pass()

    campaign.refresh_from_db()
    assert campaign.status == "draft" and not campaign.pairs.exists()
    assert campaign.status_note == f"Its generation run {campaign.preparing_run_id} ended failed: no such checkpoint"
    listed = {c["id"]: c for c in engineer_client.get("/api/v1/campaigns/").json()}
    assert listed[campaign.pk]["status_note"] == campaign.status_note
    worker_periodic_pass()  # settled campaigns stay as they are
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_a_campaign_whose_run_was_deleted_returns_to_draft(unreachable_checkpoint):
    campaign = _waiting_campaign("orphan", *unreachable_checkpoint)
    Run.objects.filter(pk=campaign.preparing_run_id).delete()

    assert [c.pk for c in services.campaigns_reconcile_preparing()] == [campaign.pk]

    campaign.refresh_from_db()
    assert campaign.status == "draft" and "deleted" in campaign.status_note


def test_a_campaign_still_generating_is_left_alone(unreachable_checkpoint):
    campaign = _waiting_campaign("busy", *unreachable_checkpoint)
    run_services.run_claim(run_id=campaign.preparing_run_id, worker="w1")

    assert services.campaigns_reconcile_preparing() == []
    campaign.refresh_from_db()
    assert campaign.status == "preparing" and f"generation run {campaign.preparing_run_id}" in campaign.status_note

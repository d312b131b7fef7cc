"""The campaign page draws the learning curve of a refit next to zero-shot and the human ceiling (Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core import services as run_services
from core.models import Run
from core.run_execution import run_execute
from tests.support.refit_campaign import FAST, grey_campaign, vote

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_campaign_page_shows_the_learning_curve_and_when_to_stop(
    users, django_user_model, settings, tmp_path, page, login, live_server
):
    settings.MEDIA_ROOT = tmp_path
    campaign, annotators = grey_campaign(users, django_user_model)
    login("reviewer", "reviewer-pass-123")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    expect(page.locator("#curve-advice")).to_contain_text("No refit yet")
    expect(page.locator("#selection")).to_have_text("uncertainty")

    vote(campaign, annotators, 16)
    run = run_services.run_create(kind="selection_refit", config={"campaign": campaign.pk, **FAST})
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")

    expect(page.locator("canvas#curve")).to_be_visible()
    expect(page.locator("#curve-ceiling")).to_have_text("1.000")  # the noiseless judge's votes always agree
    expect(page.locator("#curve-advice")).to_contain_text("held-out")
    datasets = page.evaluate(
        "() => Chart.getChart(document.getElementById('curve')).data.datasets"
        ".map((d) => [d.label, d.data.map((p) => p.x)])"
    )
    labels = [label for label, _ in datasets]
    assert labels[:2] == ["held-out accuracy (latest refit)", "at each refit"] and "human ceiling" in labels
    assert datasets[0][1] == [16, 32]  # one point per fit, at 1/2 and all of the votes so far

"""Campaigns from the browser (issue 18, item 1): an engineer creates a collect campaign from the form (two
annotators, two questions), is told beside the field what is wrong first, previews its pairs, and lands on the
campaign's page; the row holds what was chosen and an annotator sees the campaign on their home page."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from feedback.models import Campaign, CampaignStatus
from generators.models import ModelVersion, PromptSet
from tests.conftest import make_user
from tests.support.images import store_images, tiny_png

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CAMPAIGNS_API = "/api/v1/campaigns/"


@pytest.fixture
def world(users, django_user_model, settings, tmp_path):
    """The sandbox's rows, images (seeds 0 and 1) of its base version for the eval prompts, a second annotator."""
    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    eval_set = PromptSet.objects.get(name="sandbox-eval")
    prompts = list(eval_set.prompts.order_by("pk"))
    store_images(
        base,
        [(p, seed, tiny_png(37 * i + 120 * seed, 40 * seed, 90)) for i, p in enumerate(prompts) for seed in (0, 1)],
    )
    second = make_user(django_user_model, "annotator", username="annotator2")
    return {"base": base, "eval_set": eval_set, "annotators": [users["annotator"], second]}


def test_an_engineer_creates_a_collect_campaign_from_the_form(browser, page, live_server, login, world):
    login("engineer", "engineer-pass-123")
    page.goto(f"{live_server.url}/campaigns/")
    page.get_by_role("link", name="New campaign").click()
    expect(page.locator("#campaign-form")).to_have_attribute("data-ready", "true")

    page.fill("#field-name", "shapes-votes")
    page.select_option("#field-purpose", "collect")
    page.select_option("#field-prompt_set", str(world["eval_set"].pk))
    page.select_option("#field-model_versions", [str(world["base"].pk)])
    page.select_option("#field-annotators", ["annotator", "annotator2"])
    page.fill("#field-votes_per_pair", "0")
    page.fill("#field-gold_rate", "0.1")
    page.fill("#field-lease_seconds", "120")
    add = page.get_by_role("button", name="Add questions entry")
    for i, (key, text) in enumerate(
        [("overall", "Which image is better overall?"), ("prompt", "Which follows the prompt?")]
    ):
        add.click()
        page.fill(f"#field-questions-{i}-key", key)
        page.fill(f"#field-questions-{i}-text", text)

    # A bad value: the API's 400 beside its field, nothing created.
    with page.expect_response(lambda r: r.url.endswith(CAMPAIGNS_API) and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Create campaign").click()
    assert answer.value.status == 400
    expect(page.locator("#error-votes_per_pair")).to_contain_text("greater than or equal to 1")
    expect(page.locator('[data-field="votes_per_pair"]')).to_have_class(re.compile(r"\binvalid\b"))
    assert not Campaign.objects.exists()

    page.fill("#field-votes_per_pair", "2")
    # With a version that has no images yet, the preview says the campaign will make them (preparing).
    flow = ModelVersion.objects.get(base_model__name="sandbox-flow", name="base")
    page.select_option("#field-model_versions", [str(world["base"].pk), str(flow.pk)])
    page.get_by_role("button", name="Preview pairs").click()
    expect(page.locator("#preview-summary")).to_contain_text("do not exist yet")
    expect(page.locator("#preview-summary")).to_contain_text("preparing")
    expect(page.locator("#preview-pairs-list figure")).to_have_count(0)

    page.select_option("#field-model_versions", [str(world["base"].pk)])
    page.get_by_role("button", name="Preview pairs").click()
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#preview-summary")).to_contain_text("All of them exist")
    expect(page.locator("#preview-pairs-list figure")).to_have_count(4)
    expect(page.locator("#error-votes_per_pair")).to_be_empty()
    first_image = page.locator("#preview-pairs-list img").first.element_handle()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first_image)  # loads asynchronously
    assert first_image.evaluate("img => img.naturalWidth") == 8
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "campaign-form.png"), full_page=True)

    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    campaign = Campaign.objects.get()
    assert page.url.endswith(f"/campaigns/{campaign.pk}/")
    expect(page.locator("h1")).to_contain_text("shapes-votes")
    assert (campaign.purpose, campaign.status, campaign.votes_per_pair) == ("collect", CampaignStatus.OPEN, 2)
    assert (campaign.gold_rate, campaign.lease_seconds, campaign.selection) == (0.1, 120, "random")
    assert list(campaign.model_versions.all()) == [world["base"]]
    assert campaign.prompt_set == world["eval_set"]
    assert set(campaign.annotators.values_list("username", flat=True)) == {"annotator", "annotator2"}
    assert [q["key"] for q in campaign.questions] == ["overall", "prompt"]
    assert campaign.created_by.username == "engineer"

    # Close and open it again from its page.
    page.get_by_role("button", name="Close").click()
    expect(page.locator("h1 .state")).to_have_text("closed")
    page.get_by_role("button", name="Open again").click()
    expect(page.locator("h1 .state")).to_have_text("open")

    annotator = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    annotator.goto(f"{live_server.url}/login/")
    annotator.get_by_label("Username").fill("annotator2")
    annotator.get_by_label("Password").fill("annotator-pass-123")
    annotator.get_by_role("button", name="Log in").click()
    annotator.wait_for_load_state()
    expect(annotator.locator("main")).to_contain_text("shapes-votes")
    annotator.context.close()

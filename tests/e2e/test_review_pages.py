"""A reviewer compares two versions in the gallery, votes blind in the arena, reads the leaderboard and promotes
the winner; an annotator can open none of these pages nor the leaderboard API."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from core import services as run_services
from core.run_execution import run_execute
from feedback import services
from feedback.models import Vote
from generators.models import AliasChange, ModelAlias, ModelVersion, PromptSet
from rewards import services as reward_services

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def arena(users, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    child = ModelVersion.objects.create(base_model=base.base_model, name="candidate", parent=base)
    prompts = PromptSet.objects.get(name="sandbox-eval")
    versions = [base.pk, child.pk]
    for config in (
        {"model_versions": versions, "prompt_set": prompts.pk, "images_per_prompt": 1, "steps": 10},
        {"model_versions": versions, "prompt_set": prompts.pk, "images_per_prompt": 1, "steps": 10, "seed": 7},
    ):
        run_execute(run_id=run_services.run_create(kind="generate", config=config).pk, worker="inline")
    reward_model = reward_services.reward_model_register(name="zero-shot", backbone="sandbox")
    scoring = {"reward_model": reward_model.pk, "model_versions": versions, "prompt_set": prompts.pk}
    run_execute(
        run_id=run_services.run_create(kind="evaluate", config={**scoring, "images_per_prompt": 1}).pk, worker="inline"
    )
    campaign = services.campaign_create(
        name="base-vs-candidate",
        purpose="arena",
        prompt_set=prompts,
        model_versions=[base, child],
        annotators=[users["reviewer"]],
        votes_per_pair=1,
        images_per_prompt=1,
    )
    return {"campaign": campaign, "base": base, "child": child, "reward_model": reward_model}


def test_reviewer_compares_votes_blind_reads_the_leaderboard_and_promotes(arena, users, page, login, live_server):
    base, child, campaign = arena["base"], arena["child"], arena["campaign"]
    login("reviewer", "reviewer-pass-123")
    DOCS.mkdir(parents=True, exist_ok=True)

    gallery = f"{live_server.url}/gallery/?versions={base.pk},{child.pk}&reward_model={arena['reward_model'].pk}"
    page.goto(gallery)
    images = page.locator("img[src*='/api/v1/images/']")
    expect(images.first).to_be_visible()
    assert images.count() == 2 * PromptSet.objects.get(name="sandbox-eval").prompts.count()
    page.goto(gallery + "&tag=large")  # a short page for the screenshot, every image loaded
    for image in images.all():
        image.scroll_into_view_if_needed()
    page.wait_for_function(
        "Array.from(document.querySelectorAll(\"img[src*='/api/v1/images/']\")).every((i) => i.naturalWidth > 0)"
    )
    page.screenshot(path=str(DOCS / "gallery.png"), full_page=True)

    page.goto(f"{live_server.url}/campaigns/")
    page.get_by_role("link", name="rate").click()
    expect(page.locator("#buttons")).to_be_visible()
    for key in ("1", "2", "1", "1"):
        assignment = page.locator("#images").get_attribute("data-assignment")
        page.keyboard.press(key)
        expect(page.locator("#message")).to_contain_text("Revealed: left was sandbox/")
        expect(page.locator("#images")).not_to_have_attribute("data-assignment", assignment)
    assert Vote.objects.filter(annotator=users["reviewer"], pair__campaign=campaign).count() == 4

    page.goto(f"{live_server.url}/leaderboard/{campaign.pk}/")
    expect(page.locator("#interval-plot circle")).to_have_count(2)
    expect(page.locator("#ratings")).to_contain_text("sandbox/candidate")
    expect(page.locator("#verdicts")).to_contain_text("not enough votes")  # 4 votes cannot separate two versions
    page.screenshot(path=str(DOCS / "leaderboard.png"), full_page=True)
    page.get_by_label("Version").select_option(str(child.pk))
    page.get_by_label("Reason").fill("candidate looks better in the gallery and the arena")
    page.get_by_role("button", name="Make champion").click()
    expect(page.locator("#promote-result")).to_contain_text("champion is now sandbox/candidate")

    assert ModelAlias.objects.get(name="champion").version == child
    change = AliasChange.objects.get(alias="champion", version=child)
    assert change.changed_by == users["reviewer"] and change.previous_version == base
    page.goto(f"{live_server.url}/versions/")
    expect(page.locator("body")).to_contain_text("champion")
    page.screenshot(path=str(DOCS / "versions.png"), full_page=True)


def test_annotators_cannot_open_review_pages_or_the_leaderboard_api(arena, page, login, live_server):
    login("annotator", "annotator-pass-123")
    campaign = arena["campaign"].pk
    for path in ("/gallery/", "/versions/", f"/leaderboard/{campaign}/", f"/campaigns/{campaign}/audit/"):
        assert page.goto(f"{live_server.url}{path}").status == 403, path
    assert page.request.get(f"{live_server.url}/api/v1/leaderboard/?campaign={campaign}").status == 403

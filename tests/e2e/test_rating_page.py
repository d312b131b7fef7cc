"""An annotator rates pairs with the keyboard and the mouse; the votes land on the right images."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from feedback import services
from feedback.models import Pair, Vote
from generators.models import GeneratedImage

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def campaign(users, sandbox_train_images):
    version, prompt_set, made_with = sandbox_train_images
    return services.campaign_create(
        name="shapes",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
        votes_per_pair=1,
        sampler_settings=made_with,  # the images made by the fixture
    )


RATING_IMAGE_URL = re.compile(r"/api/v1/rating-images/[A-Za-z0-9_-]{22}/(left|right)/")


def _shown(page, live_server) -> tuple[int, str, str]:
    """The assignment on screen and the sha256 of the bytes the page shows on the left and on the right."""
    images = page.locator("#images")
    assignment = int(images.get_attribute("data-assignment"))
    digests = []
    for side in ("left", "right"):
        url = page.locator(f"#{side}-image").get_attribute("src")
        assert RATING_IMAGE_URL.fullmatch(url), url  # an opaque token, no image id
        response = page.request.get(f"{live_server.url}{url}")
        assert response.status == 200
        digests.append(hashlib.sha256(response.body()).hexdigest())
    return assignment, digests[0], digests[1]


def test_annotator_rates_with_keyboard_and_mouse(campaign, users, page, login, live_server):
    login("annotator", "annotator-pass-123")
    page.get_by_role("link", name="Rate").click()
    expect(page.locator("#buttons")).to_be_visible()

    expected = []
    for key, choice in (("1", "left"), ("ArrowRight", "right"), ("3", "tie")):
        assignment, left, right = _shown(page, live_server)
        page.keyboard.press(key)
        expected.append((assignment, choice, left, right))
        expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    for button, choice in (("Left is better (1 / ←)", "left"), ("Both bad (4)", "both_bad"), ("Skip (0)", "skip")):
        assignment, left, right = _shown(page, live_server)
        page.get_by_role("button", name=button).click()
        expected.append((assignment, choice, left, right))
        expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    expect(page.locator("#progress")).to_contain_text("You rated 5 pairs")
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "rating-page.png"), full_page=True)

    for assignment, choice, left, right in expected:
        vote = Vote.objects.get(assignment_id=assignment)
        pair = Pair.objects.get(pk=vote.pair_id)
        image_a, image_b = (GeneratedImage.objects.get(pk=pk).sha256 for pk in (pair.image_a_id, pair.image_b_id))
        assert vote.submitted == choice and vote.annotator == users["annotator"]
        assert {left, right} == {image_a, image_b}
        if choice in ("left", "right"):
            chosen = left if choice == "left" else right
            assert vote.choice == ("a" if chosen == image_a else "b")
        else:
            assert vote.choice == choice
        assert vote.seconds is not None and vote.seconds >= 0
    assert Vote.objects.count() == 6


def test_a_finished_campaign_says_so(campaign, users, page, login, live_server):
    for pair in campaign.pairs.all():
        Pair.objects.filter(pk=pair.pk).update(valid_votes=1)
    login("annotator", "annotator-pass-123")
    page.goto(f"{live_server.url}/annotate/{campaign.pk}/")
    expect(page.locator("#prompt")).to_have_text("Nothing to rate here right now")
    expect(page.locator("#outlook")).to_have_text("This campaign has all the votes it needs. Thank you!")
    expect(page.locator("#buttons")).to_be_hidden()


def test_after_skipping_every_pair_the_page_says_why_nothing_is_left(campaign, users, page, login, live_server):
    login("annotator", "annotator-pass-123")
    page.goto(f"{live_server.url}/annotate/{campaign.pk}/")
    expect(page.locator("#buttons")).to_be_visible()
    for _ in range(campaign.pairs.filter(is_gold=False).count()):
        shown = page.locator("#images").get_attribute("data-assignment")
        page.keyboard.press("0")
        page.wait_for_function(
            "(shown) => { const images = document.getElementById('images');"
            " return images.hidden || images.dataset.assignment !== shown; }",
            arg=shown,
        )
    expect(page.locator("#prompt")).to_have_text("Nothing to rate here right now")
    expect(page.locator("#outlook")).to_contain_text("You have rated every pair you can")
    expect(page.locator("#outlook")).to_contain_text("add annotators")

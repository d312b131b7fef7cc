"""Content safety in Chromium: an annotator reports an image from the rating page with the keyboard (X, 2, U) and
with the mouse (with a note); each reported image leaves both open campaigns at once, never comes back to the
annotator, and the dataset snapshot leaves its votes out; an engineer keeps one out and returns the other on
/safety/."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from playwright.sync_api import expect

from feedback import services
from feedback.models import FlagState, ImageFlag, Pair, Vote
from generators.models import GeneratedImage
from tests.e2e.test_rating_page import DOCS, _shown

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def campaigns(users, sandbox_train_images):
    """Two open collect campaigns over the same sandbox images (two seeds per train prompt), k=1."""
    version, prompt_set, made_with = sandbox_train_images
    return [
        services.campaign_create(
            name=name,
            purpose="collect",
            prompt_set=prompt_set,
            model_versions=[version],
            annotators=[users["annotator"]],
            votes_per_pair=1,
            sampler_settings=made_with,
        )
        for name in ("shapes", "shapes again")
    ]


def _image_by_sha(digest: str) -> GeneratedImage:
    return GeneratedImage.objects.get(sha256=digest)


def _pairs_showing(image: GeneratedImage):
    return Pair.objects.filter(image_a=image) | Pair.objects.filter(image_b=image)


def test_reported_images_leave_every_campaign_and_the_dataset(campaigns, users, page, login, live_server):
    first, second = campaigns
    login("annotator", "annotator-pass-123")
    page.goto(f"{live_server.url}/annotate/{first.pk}/")
    expect(page.locator("#buttons")).to_be_visible()

    # One vote first, so that the dataset has something to leave out later.
    voted_assignment, voted_left, voted_right = _shown(page, live_server)
    page.keyboard.press("1")
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(voted_assignment))

    # Keyboard: X opens the panel, 2 picks the right image, U sends it as unsafe.
    assignment, _, right = _shown(page, live_server)
    page.keyboard.press("x")
    expect(page.locator("#report")).to_be_visible()
    page.keyboard.press("1")  # a side key while the panel is open chooses the image; it is no vote
    page.keyboard.press("2")
    expect(page.locator("input[name=report-side][value=right]")).to_be_checked()
    page.screenshot(path=str(DOCS / "rating-page-report.png"), full_page=True)
    page.keyboard.press("u")
    expect(page.locator("#message")).to_contain_text("withdrawn")
    expect(page.locator("#report")).to_be_hidden()
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    assert not Vote.objects.filter(assignment_id=assignment).exists()
    unsafe = _image_by_sha(right)
    flag = ImageFlag.objects.get(image=unsafe)
    assert flag.state == FlagState.WITHDRAWN
    assert [(r.reporter.username, r.reason, r.campaign_id) for r in flag.reports.all()] == [
        ("annotator", "unsafe", first.pk)
    ]
    showing = _pairs_showing(unsafe)
    assert {pair.campaign_id for pair in showing} == {first.pk, second.pk}
    assert all(pair.withdrawn for pair in showing)

    # Mouse: the button, Both, a note, Offensive.
    assignment, left, right = _shown(page, live_server)
    page.get_by_role("button", name="Report an image (X)").click()
    page.get_by_label("Both (3)").check()
    page.get_by_label("Note (optional)").fill("a rude word in the picture")
    page.get_by_role("button", name="Offensive (O)").click()
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    offensive = [_image_by_sha(left), _image_by_sha(right)]
    for image in offensive:
        report = ImageFlag.objects.get(image=image).reports.get()
        assert (report.reason, report.note) == ("offensive", "a rude word in the picture")

    # Rate the rest of both campaigns: no reported image is ever shown again.
    reported = {unsafe.sha256, *(image.sha256 for image in offensive)}
    for campaign in (first, second):
        page.goto(f"{live_server.url}/annotate/{campaign.pk}/")
        while True:
            page.wait_for_function(
                "!document.getElementById('buttons').hidden || document.getElementById('outlook').textContent !== ''"
            )
            if not page.locator("#buttons").is_visible():
                break
            shown_assignment, left, right = _shown(page, live_server)
            assert not {left, right} & reported
            page.keyboard.press("2")
            page.wait_for_function(
                "(shown) => document.getElementById('images').dataset.assignment !== shown"
                " || document.getElementById('buttons').hidden",
                arg=str(shown_assignment),
            )
        expect(page.locator("#outlook")).to_contain_text("all the votes it needs")
    # Each campaign pairs a prompt's two seeds: one pair shows the unsafe image, one the two offensive ones.
    assert Pair.objects.filter(withdrawn=True).count() == 4
    for campaign in (first, second):
        regular = campaign.pairs.filter(withdrawn=False)
        assert all(pair.valid_votes == 1 for pair in regular)

    # The dataset snapshot: every vote on a pair still in the campaign, none on a withdrawn one.
    from rewards import services as reward_services

    dataset = reward_services.dataset_snapshot(name="after reports", campaigns=[first, second])
    kept_votes = Vote.objects.filter(pair__withdrawn=False).exclude(choice="skip").count()
    assert dataset.rows == kept_votes
    rows = pq.read_table(dataset.file.path, columns=["image_0_uid", "image_1_uid"]).to_pydict()
    assert not (set(rows["image_0_uid"]) | set(rows["image_1_uid"])) & reported

    # The engineer reviews on /safety/: keeps the unsafe image out, returns the offensive pair.
    page.context.clear_cookies()
    login("engineer", "engineer-pass-123")
    page.goto(f"{live_server.url}/safety/")
    expect(page.locator("#awaiting")).to_contain_text("3 images awaiting review")
    expect(page.locator("#flags")).to_contain_text("a rude word in the picture")
    page.screenshot(path=str(DOCS / "safety-review.png"), full_page=True)
    row = page.locator(f"tr[data-image='{unsafe.pk}']")
    row.get_by_role("button", name="Keep out").click()
    expect(row.locator("[data-field=state]")).to_have_text("kept out (reviewed)")
    for image in offensive:
        other = page.locator(f"tr[data-image='{image.pk}']")
        other.get_by_label(f"Note on image {image.pk}").fill("a false alarm")
        other.get_by_role("button", name="Return").click()
        expect(other.locator("[data-field=state]")).to_have_text("returned to its campaigns (reviewed)")
    assert ImageFlag.objects.get(image=unsafe).state == FlagState.CONFIRMED
    assert all(pair.withdrawn for pair in _pairs_showing(unsafe))
    returned = [pair for image in offensive for pair in _pairs_showing(image)]
    assert returned and not any(pair.withdrawn for pair in returned)
    assert ImageFlag.objects.get(image=offensive[0]).review_note == "a false alarm"

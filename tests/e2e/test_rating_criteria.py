"""An annotator answers a three-question campaign with the keyboard only: each question in turn, the active one
marked, Backspace back, 0 skips the pair; the votes land per criterion on the right images."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from feedback import services
from feedback.models import Pair, Vote
from generators.models import GeneratedImage
from tests.e2e.test_rating_page import DOCS, _shown

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

QUESTIONS = [
    {"key": "prompt", "text": "Which image matches the prompt?"},
    {"key": "looks", "text": "Which image looks better?"},
    {"key": "plausible", "text": "Which image is plausible, without artefacts?"},
]


@pytest.fixture
def campaign(users, sandbox_train_images):
    version, prompt_set, made_with = sandbox_train_images
    return services.campaign_create(
        name="three questions",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
        votes_per_pair=1,
        sampler_settings=made_with,
        questions=QUESTIONS,
    )


def _active(page):
    return page.locator("#questions li.active")


def test_three_questions_answered_with_keys_only_are_stored_per_criterion(campaign, users, page, login, live_server):
    login("annotator", "annotator-pass-123")
    page.goto(f"{live_server.url}/annotate/{campaign.pk}/")
    expect(page.locator("#buttons")).to_be_visible()
    expect(page.locator("#questions .question-text")).to_have_text([q["text"] for q in QUESTIONS])

    expected = []  # (assignment, {criterion: pressed}, left sha, right sha)
    # Pair 1: left for the prompt, a change of mind (Backspace) on looks, then right; tie on plausibility.
    assignment, left, right = _shown(page, live_server)
    expect(_active(page)).to_have_attribute("data-key", "prompt")
    page.keyboard.press("1")
    expect(_active(page)).to_have_attribute("data-key", "looks")
    expect(page.locator('#questions li[data-key="prompt"] .question-answer')).to_have_text("→ left")
    page.keyboard.press("4")
    expect(_active(page)).to_have_attribute("data-key", "plausible")
    page.keyboard.press("Backspace")
    expect(_active(page)).to_have_attribute("data-key", "looks")
    expect(page.locator('#questions li[data-key="looks"] .question-answer')).to_have_text("")
    page.keyboard.press("ArrowRight")
    expect(_active(page)).to_have_attribute("data-key", "plausible")
    assert not Vote.objects.exists()  # nothing is sent before every question is answered
    page.keyboard.press("3")
    expected.append((assignment, {"prompt": "left", "looks": "right", "plausible": "tie"}, left, right))
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    expect(_active(page)).to_have_attribute("data-key", "prompt")  # the next pair starts at the first question

    # Pair 2: both bad, left, right.
    assignment, left, right = _shown(page, live_server)
    for key in ("4", "ArrowLeft", "2"):
        page.keyboard.press(key)
    expected.append((assignment, {"prompt": "both_bad", "looks": "left", "plausible": "right"}, left, right))
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))

    # Pair 3: one answer, then 0 skips the whole pair.
    assignment, left, right = _shown(page, live_server)
    page.keyboard.press("1")
    page.screenshot(path=str(DOCS / "rating-page-questions.png"), full_page=True)
    page.keyboard.press("0")
    skipped = assignment
    expect(page.locator("#images")).not_to_have_attribute("data-assignment", str(assignment))
    expect(page.locator("#progress")).to_contain_text("You rated 2 pairs")

    for assignment, answers, left, right in expected:
        votes = {vote.criterion: vote for vote in Vote.objects.filter(assignment_id=assignment)}
        assert set(votes) == set(answers)
        pair = Pair.objects.get(pk=votes["prompt"].pair_id)
        image_a, image_b = (GeneratedImage.objects.get(pk=pk).sha256 for pk in (pair.image_a_id, pair.image_b_id))
        assert {left, right} == {image_a, image_b}
        for criterion, pressed in answers.items():
            vote = votes[criterion]
            assert vote.submitted == pressed and vote.annotator == users["annotator"]
            if pressed in ("left", "right"):
                chosen = left if pressed == "left" else right
                assert vote.choice == ("a" if chosen == image_a else "b"), (criterion, pressed)
            else:
                assert vote.choice == pressed
        assert pair.valid_votes == 1
    assert sorted(Vote.objects.filter(assignment_id=skipped).values_list("criterion", "choice")) == [
        ("looks", "skip"),
        ("plausible", "skip"),
        ("prompt", "skip"),
    ]
    assert Vote.objects.count() == 9

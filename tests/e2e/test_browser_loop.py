"""The whole loop in the browser (issue 18's acceptance): an engineer creates two annotators and a collect campaign,
the annotators rate it from the keyboard, the engineer trains a reward model and fine-tunes from the run forms, and a
reviewer opens an arena of the new version against the base, rates it, reads the leaderboard and promotes the new
version. The test code touches neither the API nor the CLI: it drives Chromium, reads the database to check what the
pages did, and a real Celery worker runs every job. The platform is installed first (``sandbox_setup``, the
accounts of one engineer and one reviewer), as a deployment would be.

Each page visited is saved as ``docs/screenshots/walkthrough-NN-<page>.png`` (listed in the README).
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import expect

from core.models import Run
from feedback.models import Campaign, CampaignStatus, Vote
from finetune.models import FineTune
from generators.models import AliasChange, GeneratedImage, ModelAlias, ModelVersion, PromptSet
from rewards.models import RewardModel

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
VIEWPORT = {"width": 1280, "height": 900}
# Both campaigns pair images of the 24 sandbox eval prompts made with 10 sampling steps (the sandbox's default is
# 20): the arena then generates only the new version's images, the base's being the collect campaign's seed 0.
STEPS = 10
JOB_TIMEOUT_MS = 600_000  # one job on the worker; generous: the two CPU cores may be shared with other work

# What an annotator sees: the shape that covers more of its image (the sandbox users' taste, the "larger" pair
# oracle). Counted like generators.sandbox.oracles: pixels far enough from the border's median colour.
LEFT_IS_LARGER = """async () => {
  const images = ["left-image", "right-image"].map((id) => document.getElementById(id));
  await Promise.all(images.map((image) => image.decode()));
  const area = (image) => {
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const {data, width, height} = context.getImageData(0, 0, canvas.width, canvas.height);
    const at = (x, y) => { const i = 4 * (y * width + x); return [data[i], data[i + 1], data[i + 2]]; };
    const border = [];
    for (let x = 0; x < width; x++) border.push(at(x, 0), at(x, height - 1));
    for (let y = 0; y < height; y++) border.push(at(0, y), at(width - 1, y));
    const median = [0, 1, 2].map((c) => border.map((p) => p[c]).sort((a, b) => a - b)[border.length >> 1]);
    let count = 0;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const [r, g, b] = at(x, y);
      if (Math.hypot(r - median[0], g - median[1], b - median[2]) >= 30) count += 1;
    }
    return count;
  };
  return area(images[0]) >= area(images[1]);
}"""


@pytest.fixture
def patient_expect():
    """Assertions wait up to 20 s (Playwright's default is 5 s): the pages share two cores with the worker's jobs."""
    expect.set_options(timeout=20_000)
    yield
    expect.set_options(timeout=5_000)


@pytest.fixture
def installed(users):
    """A fresh installation: the bundled sandbox (base version, alias champion, prompt sets) and the staff accounts."""
    call_command("sandbox_setup", stdout=io.StringIO())
    return users


class Shots:
    """Numbered screenshots of the walk, in the order the pages were visited."""

    def __init__(self) -> None:
        DOCS.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, page, name: str, full_page: bool = False) -> None:
        """The window (``full_page``: the whole page, for forms whose answer is at the bottom)."""
        self.count += 1
        page.screenshot(path=str(DOCS / f"walkthrough-{self.count:02d}-{name}.png"), full_page=full_page)


def _log_in(browser, live_server, username: str, password: str):
    """A page of a fresh browser context, logged in as ``username``."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    expect(page.locator("header .who")).to_have_text(username)
    return page


def _nav(page, name: str) -> None:
    """Follow a link of the site's main navigation."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _reload_until_open(page, timeout_s: float = JOB_TIMEOUT_MS / 1000) -> None:
    """Reload a campaign's page until its state reads open (it opens by itself once its images are made)."""
    deadline = time.monotonic() + timeout_s
    state = page.locator("h1 .state")
    while state.inner_text() != "open":
        assert time.monotonic() < deadline, f"the campaign is still {state.inner_text()}"
        time.sleep(1)
        page.reload()


def _wait_for_run(page, shots: Shots, name: str) -> Run:
    """On a run's page: wait until it reads succeeded (the page follows the run live); the run's row."""
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("#run-state")).to_have_text(re.compile("succeeded|failed|cancelled"), timeout=JOB_TIMEOUT_MS)
    run = Run.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert run.state == "succeeded", (run.kind, run.error)
    assert run.worker != "inline"
    expect(page.locator("#run-result")).not_to_be_empty()
    shots(page, name)
    return run


def _campaign_link(page, campaign: str, link: str) -> None:
    """Follow a link of a campaign's row on the campaigns page."""
    row = page.get_by_role("row", name=re.compile(campaign))
    row.get_by_role("link", name=link, exact=True).click()


def _rate_shown_pair(page) -> bool:
    """Rate the pair on screen from the keyboard, larger shape wins; False when the page says nothing is left."""
    expect(page.locator("#images:not([hidden]), #outlook:not(:empty)").first).to_be_visible()
    if page.locator("#images").is_hidden():
        return False
    shown = page.locator("#images").get_attribute("data-assignment")
    page.keyboard.press("1" if page.evaluate(LEFT_IS_LARGER) else "2")
    page.wait_for_function(
        "(shown) => { const images = document.getElementById('images');"
        " return images.hidden || images.dataset.assignment !== shown; }",
        arg=shown,
    )
    return True


def _create_person(page, username: str) -> str:
    """Create an annotator on /people/ with a generated password; the password the page shows once."""
    page.fill("#new-username", username)
    page.fill("#new-password", "")
    page.get_by_role("button", name="Create", exact=True).click()
    created = page.locator("#new-person-created")
    expect(created.locator("[data-field=username]")).to_have_text(username)
    return created.locator("[data-field=password]").inner_text()


def _open_groups(page) -> None:
    for summary in page.locator("details.group:not([open]) > summary").all():
        summary.click()


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_the_whole_loop_in_the_browser(start_worker, browser, live_server, installed, patient_expect):
    start_worker()
    shots = Shots()
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    eval_set = PromptSet.objects.get(name="sandbox-eval")

    # --- The engineer creates two annotators and puts them in a group. ---------------------------------------
    engineer = _log_in(browser, live_server, "engineer", "engineer-pass-123")
    _nav(engineer, "People")
    passwords = {name: _create_person(engineer, name) for name in ("ana", "ben")}
    engineer.reload()
    engineer.fill("#group-name", "walkthrough-raters")
    engineer.fill("#group-usernames", "ana, ben")
    engineer.get_by_role("button", name="Add (creates the group if new)").click()
    expect(engineer.locator('#group-table tr[data-group="walkthrough-raters"]')).to_contain_text("ana, ben")
    shots(engineer, "people")
    for name in ("ana", "ben"):
        assert list(get_user_model().objects.get(username=name).groups.values_list("name", flat=True)) == ["annotator"]

    # --- ... and a collect campaign of the base version's images, for that group. -----------------------------
    _nav(engineer, "Campaigns")
    engineer.get_by_role("link", name="New campaign").click()
    expect(engineer.locator("#campaign-form")).to_have_attribute("data-ready", "true")
    engineer.fill("#field-name", "walkthrough-collect")
    engineer.select_option("#field-purpose", "collect")
    engineer.select_option("#field-prompt_set", str(eval_set.pk))
    engineer.select_option("#field-model_versions", [str(base.pk)])
    engineer.select_option("#field-annotator_groups", ["walkthrough-raters"])
    engineer.fill("#field-votes_per_pair", "1")
    _open_groups(engineer)
    engineer.fill("#field-sampler_settings-steps", str(STEPS))
    engineer.get_by_role("button", name="Preview pairs").click()
    expect(engineer.locator("#preview-summary")).to_contain_text("preparing")  # no image of these prompts yet
    shots(engineer, "collect-campaign-form", full_page=True)
    engineer.get_by_role("button", name="Create campaign").click()
    engineer.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    collect = Campaign.objects.get(name="walkthrough-collect")
    assert set(collect.annotators.values_list("username", flat=True)) == {"ana", "ben"}
    assert collect.status == CampaignStatus.PREPARING and collect.created_by.username == "engineer"
    _reload_until_open(engineer)
    pairs = collect.pairs.count()
    assert pairs == 24  # one pair (seeds 0 and 1) per prompt
    shots(engineer, "collect-campaign")

    # --- Both annotators rate it from the keyboard, in turns, until nothing is left. ---------------------------
    raters = {}
    for name in ("ana", "ben"):
        raters[name] = _log_in(browser, live_server, name, passwords[name])
        expect(raters[name].locator("main")).to_contain_text("walkthrough-collect")
    shots(raters["ana"], "annotator-home")
    for page in raters.values():
        page.get_by_role("link", name="Rate").click()
    rating = dict.fromkeys(raters, True)
    turns = 0
    while any(rating.values()):
        for name, page in raters.items():
            if rating[name]:
                rating[name] = _rate_shown_pair(page)
                turns += 1
                if turns == 9:
                    shots(page, "rating-page")
    raters["ben"].reload()
    expect(raters["ben"].locator("#outlook")).to_contain_text("all the votes it needs")
    shots(raters["ben"], "rating-done")
    votes = Vote.objects.filter(pair__campaign=collect)
    assert votes.count() == pairs and votes.filter(choice__in=("a", "b")).count() == pairs
    by_rater = {name: votes.filter(annotator__username=name).count() for name in raters}
    assert min(by_rater.values()) >= pairs // 3, by_rater  # both rated, in turns
    for page in raters.values():
        page.context.close()

    # --- The engineer trains a reward model on the votes from the run form. ------------------------------------
    _nav(engineer, "Runs")
    engineer.get_by_role("link", name="New run…").click()
    engineer.get_by_role("link", name="reward_train", exact=True).click()
    expect(engineer.locator("#run-form")).to_have_attribute("data-ready", "true")
    engineer.select_option("#field-campaigns", str(collect.pk))
    engineer.fill("#field-name", "walkthrough-reward")
    engineer.select_option("#field-head", "linear")  # a small head on the frozen backbone: seconds
    _open_groups(engineer)
    engineer.fill("#field-ensemble_size", "2")
    engineer.fill("#field-head_steps", "200")
    shots(engineer, "reward-train-form")
    engineer.get_by_role("button", name="Start").click()
    reward_run = _wait_for_run(engineer, shots, "reward-train-run")
    reward_model = RewardModel.objects.get(name="walkthrough-reward")
    assert reward_run.result["reward_model"] == reward_model.pk
    assert list(reward_model.dataset.campaigns.all()) == [collect]

    # --- ... and fine-tunes the base version against it (the quick sandbox preset, the learned reward). ---------
    _nav(engineer, "Runs")
    engineer.get_by_role("link", name="New run…").click()
    engineer.get_by_role("link", name="finetune", exact=True).click()
    expect(engineer.locator("#run-form")).to_have_attribute("data-ready", "true")
    engineer.get_by_role("button", name="quick sandbox").click()
    expect(engineer.locator("#field-model_version")).to_have_value(str(base.pk))  # the champion
    engineer.select_option("#field-oracle", "")  # the preset's pixel oracle out, the reward model in
    engineer.select_option("#field-reward_model", str(reward_model.pk))
    engineer.fill("#field-name", "walkthrough")
    _open_groups(engineer)
    engineer.fill("#field-epochs", "2")
    engineer.fill("#field-samples_per_epoch", "8")
    shots(engineer, "finetune-form")
    engineer.get_by_role("button", name="Start").click()
    finetune_run = _wait_for_run(engineer, shots, "finetune-run")
    tune = FineTune.objects.get(run=finetune_run)
    tuned = tune.version
    assert (tuned.name, tuned.parent, tune.reward_model) == ("walkthrough", base, reward_model)
    engineer.context.close()

    # --- A reviewer opens an arena of the new version against the base, from the campaign form. -----------------
    reviewer = _log_in(browser, live_server, "reviewer", "reviewer-pass-123")
    _nav(reviewer, "Campaigns")
    reviewer.get_by_role("link", name="New campaign").click()
    expect(reviewer.locator("#campaign-form")).to_have_attribute("data-ready", "true")
    expect(reviewer.locator("#field-purpose")).to_have_value("arena")  # the one purpose offered to reviewers
    reviewer.fill("#field-name", "walkthrough-arena")
    reviewer.select_option("#field-prompt_set", str(eval_set.pk))
    reviewer.select_option("#field-model_versions", [str(base.pk), str(tuned.pk)])
    reviewer.select_option("#field-annotators", ["reviewer"])
    reviewer.fill("#field-votes_per_pair", "1")
    _open_groups(reviewer)
    reviewer.fill("#field-images_per_prompt", "1")
    reviewer.fill("#field-sampler_settings-steps", str(STEPS))  # the collect campaign's: its base images serve
    reviewer.get_by_role("button", name="Preview pairs").click()
    expect(reviewer.locator("#preview-summary")).to_contain_text("preparing")  # the new version has no image yet
    shots(reviewer, "arena-campaign-form", full_page=True)
    reviewer.get_by_role("button", name="Create campaign").click()
    reviewer.wait_for_url(re.compile(r"/campaigns/\d+/$"))
    arena = Campaign.objects.get(name="walkthrough-arena")
    assert (arena.purpose, arena.created_by.username) == ("arena", "reviewer")
    assert set(arena.model_versions.all()) == {base, tuned}
    _reload_until_open(reviewer)
    shots(reviewer, "arena-campaign")
    made = GeneratedImage.objects.filter(generation_run=Campaign.objects.get(pk=arena.pk).preparing_run)
    assert made.count() == 24 and set(made.values_list("model_version", flat=True)) == {tuned.pk}  # base's reused

    # --- ... rates it from the keyboard (blind, each side revealed after the vote) ... -------------------------
    _nav(reviewer, "Campaigns")
    _campaign_link(reviewer, "walkthrough-arena", "rate")
    rated = 0
    while _rate_shown_pair(reviewer):
        expect(reviewer.locator("#message")).to_contain_text("Revealed: left was sandbox/")
        rated += 1
        if rated == 5:
            shots(reviewer, "arena-rating")
    arena_pairs = arena.pairs.count()
    assert rated == arena_pairs == 24  # one pair per eval prompt
    assert Vote.objects.filter(pair__campaign=arena, annotator__username="reviewer").count() == arena_pairs

    # --- ... reads the leaderboard and promotes the new version. -----------------------------------------------
    _nav(reviewer, "Campaigns")
    _campaign_link(reviewer, "walkthrough-arena", "leaderboard")
    expect(reviewer.locator("#interval-plot circle")).to_have_count(2)
    expect(reviewer.locator("#ratings")).to_contain_text("sandbox/walkthrough")
    expect(reviewer.locator("#verdicts")).not_to_be_empty()
    shots(reviewer, "leaderboard", full_page=True)
    reviewer.get_by_label("Version").select_option(str(tuned.pk))
    reviewer.get_by_label("Reason").fill("the walkthrough promotes the version it tuned")
    reviewer.get_by_role("button", name="Make champion").click()
    expect(reviewer.locator("#promote-result")).to_contain_text("champion is now sandbox/walkthrough")
    assert ModelAlias.objects.get(name="champion").version == tuned
    change = AliasChange.objects.get(alias="champion", version=tuned)
    assert (change.changed_by.username, change.previous_version) == ("reviewer", base)
    _nav(reviewer, "Versions")
    expect(reviewer.locator("body")).to_contain_text("champion")
    shots(reviewer, "versions")

    # Every job ran on the worker: two image generations (one per campaign), the reward model, the fine-tune.
    runs = Run.objects.order_by("pk")
    assert [run.kind for run in runs] == ["generate", "reward_train", "finetune", "generate"]
    assert all(run.state == "succeeded" and run.worker != "inline" for run in runs)
    assert [run.created_by.username for run in runs] == ["engineer", "engineer", "engineer", "reviewer"]
    reviewer.context.close()

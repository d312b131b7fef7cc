"""The automatic metrics on the versions page, the gallery and the leaderboard, and the reward-gain flag."""

from __future__ import annotations

import html
import json
import re

import pytest

from core.models import Run
from feedback import handout
from feedback import services as feedback_services
from generators import services as generator_services
from generators.models import GeneratedImage, ModelVersion
from rewards import services
from rewards.models import RewardModel
from tests.conftest import make_user
from tests.support.images import store_images, tiny_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def measured(users, settings, tmp_path, django_user_model):
    """A parent and a child on 6 eval prompts in an arena the child wins, and an evaluate run's metrics: the child
    gains reward under ``rm`` and loses diversity (flagged); the parent has no parent (not flagged)."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    parent = ModelVersion.objects.get(base_model=base)
    child = generator_services.model_version_create(base_model=base, name="tuned", parent=parent)
    prompt_set = generator_services.prompt_set_create(name="e", split="eval", prompts=[f"p {i}" for i in range(6)])
    for version, offset in ((parent, 0), (child, 100)):
        store_images(version, [(p, 0, tiny_png(p.pk + offset)) for p in prompt_set.prompts.all()])
    annotator = make_user(django_user_model, "annotator", "a0")
    campaign = feedback_services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=prompt_set,
        model_versions=[parent, child],
        annotators=[annotator],
        votes_per_pair=1,
    )
    while (lease := handout.next_assignment(annotator=annotator, campaign=campaign)) is not None:
        child_on_left = (GeneratedImage.objects.get(pk=lease.image_a).model_version_id == child.pk) == lease.a_on_left
        feedback_services.vote_submit(
            annotator=annotator, assignment_id=lease.assignment, submitted="left" if child_on_left else "right"
        )
    reward_model = RewardModel.objects.create(name="rm", backbone="sandbox")
    run = Run.objects.create(kind="evaluate", config={}, queue="gpu")
    common = {"prompt_set_id": prompt_set.pk, "images_per_prompt": 2, "settings_hash": "h", "prompts": 6}
    rows = [
        {**common, "model_version_id": parent.pk, "metric": "clip_score", "value": 31.25, "low": 30.5, "high": 32.0},
        {**common, "model_version_id": parent.pk, "metric": "diversity", "value": 0.2, "low": 0.15, "high": 0.25},
        {**common, "model_version_id": child.pk, "metric": "clip_score", "value": 30.75, "low": 29.5, "high": 31.5},
        {**common, "model_version_id": child.pk, "metric": "fid_clip", "value": 0.125, "low": 0.1, "high": 0.15},
        {**common, "model_version_id": child.pk, "metric": "diversity", "value": 0.01, "low": 0.0, "high": 0.02},
        {**common, "model_version_id": child.pk, "metric": "diversity_delta", "value": -0.19, "low": -0.2,
         "high": -0.17, "compared_with_id": parent.pk},
        {**common, "model_version_id": child.pk, "metric": "clip_score_delta", "value": -0.5, "low": -1.5,
         "high": 0.5, "compared_with_id": parent.pk},
        {**common, "model_version_id": child.pk, "metric": "reward_win_rate", "value": 0.875, "low": 0.75,
         "high": 1.0, "reward_model_id": reward_model.pk, "compared_with_id": parent.pk},
    ]  # fmt: skip
    services.version_metrics_store(run=run, rows=[{"items": 12, **row} for row in rows])
    return {"parent": parent, "child": child, "prompt_set": prompt_set, "campaign": campaign}


def _row_of(page: str, version: ModelVersion) -> str:
    match = re.search(rf'<tr data-version="{version.pk}".*?</tr>', page, re.S)
    assert match, f"no row for version {version.pk}"
    return match.group(0)


def test_the_versions_page_shows_metrics_with_intervals_and_flags_the_child(measured, client, users):
    client.force_login(users["reviewer"])
    page = client.get(f"/versions/?prompt_set={measured['prompt_set'].pk}").content.decode()

    child, parent = _row_of(page, measured["child"]), _row_of(page, measured["parent"])
    assert 'class="flagged"' in child and 'class="flagged"' not in parent
    assert "30.75" in child and "(29.50–31.50)" in child and "0.1250" in child and "0.0100" in child
    assert 'data-reward-model="rm"' in child and "0.88" in child and "(0.75–1.00)" in child
    assert 'data-flag="reward-gain-with-loss"' in child and "rm (0.88)" in child and "diversity -0.19" in child
    assert "CLIP score -0.5" not in child  # its interval includes 0: not a loss
    assert "31.25" in parent and "data-flag" not in parent
    assert "<strong>1</strong> version flagged" in page


def test_the_versions_page_on_another_prompt_set_shows_nothing_measured(measured, client, users):
    other = generator_services.prompt_set_create(name="f", split="eval", prompts=["q"])
    client.force_login(users["engineer"])
    page = client.get(f"/versions/?prompt_set={other.pk}").content.decode()
    assert "not measured" in _row_of(page, measured["child"]) and "data-flag=" not in page


def test_the_leaderboard_shows_the_metrics_and_the_flag(measured, client, users):
    client.force_login(users["reviewer"])
    page = client.get(f"/leaderboard/{measured['campaign'].pk}/").content.decode()

    assert 'id="metric-flags"' in page and "tiny/tuned gains reward against its parent" in page
    rows = re.findall(r"<tr(?: class=\"flagged\")?><td>\d+</td><td>tiny/(\w+).*?</tr>", page, re.S)
    assert sorted(rows) == ["base", "tuned"]
    assert '<tr class="flagged"><td>1</td><td>tiny/tuned' in page  # the flagged child leads the votes all the same
    assert "30.75" in page and "31.25" in page


def _measure_config(page: str) -> dict:
    """The run config of the gallery's "Measure automatic metrics" button (HTML-escaped in its attribute)."""
    found = re.search(r"id=\"measure-metrics\".*?data-run-config='([^']*)'", page, re.S)
    assert found, "no measure button"
    return json.loads(html.unescape(found.group(1)))


def test_the_gallery_shows_each_versions_metrics_and_offers_to_measure(measured, client, users):
    client.force_login(users["reviewer"])
    ids = f"{measured['parent'].pk},{measured['child'].pk}"
    page = client.get(f"/gallery/?versions={ids}&prompt_set={measured['prompt_set'].pk}").content.decode()

    assert 'class="metrics-row"' in page and "30.75" in page and "31.25" in page and "reward-gain-with-loss" in page
    config = _measure_config(page)
    assert config["metrics"] == ["clip_score", "diversity", "reward_win_rate"]  # no reference set: no fid_clip
    assert config["images_per_prompt"] == 2 and config["model_versions"] == [
        measured["parent"].pk,
        measured["child"].pk,
    ]


def test_the_gallery_measure_config_is_a_valid_evaluate_run(measured, client, users, client_for):
    client.force_login(users["reviewer"])
    ids = f"{measured['parent'].pk},{measured['child'].pk}"
    page = client.get(f"/gallery/?versions={ids}&prompt_set={measured['prompt_set'].pk}").content.decode()
    config = _measure_config(page)
    response = client_for("reviewer").post("/api/v1/runs/", {"kind": "evaluate", "config": config}, format="json")
    assert response.status_code == 201, response.json()


def test_annotators_do_not_see_the_metric_pages(measured, client, users):
    client.force_login(users["annotator"])
    assert client.get("/versions/").status_code == 403
    assert client.get(f"/leaderboard/{measured['campaign'].pk}/").status_code == 403

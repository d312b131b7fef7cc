"""Annotator groups: created and changed by engineers, shown on /people/, and given to a new campaign, which is
assigned the group's active annotators and reviewers (besides the ones it names)."""

from __future__ import annotations

import pytest

from core.models import AnnotatorGroup
from feedback.models import Campaign
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign_body(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(name="p", split="train", prompts=["p0"])
    store_images(version, [(prompt_set.prompts.get(), seed, b"PNG %d" % seed) for seed in (0, 1)])
    return {"name": "grouped", "purpose": "collect", "prompt_set": prompt_set.pk, "model_versions": [version.pk]}


def test_engineers_create_groups_and_change_members(engineer_client, users, django_user_model):
    second = make_user(django_user_model, "annotator", username="ann2")
    created = engineer_client.post(
        "/api/v1/annotator-groups/", {"name": "team-a", "members": ["annotator"]}, format="json"
    )
    assert created.status_code == 201 and created.json()["members"] == ["annotator"]

    taken = engineer_client.post("/api/v1/annotator-groups/", {"name": "team-a"}, format="json")
    assert taken.status_code == 400 and "already exists" in str(taken.json()["name"])
    not_a_rater = engineer_client.post(
        "/api/v1/annotator-groups/", {"name": "b", "members": ["engineer"]}, format="json"
    )
    assert not_a_rater.status_code == 400 and "members" in not_a_rater.json()

    url = f"/api/v1/annotator-groups/{created.json()['id']}/members/"
    changed = engineer_client.post(url, {"add": ["ann2", "reviewer"], "remove": ["annotator"]}, format="json")
    assert changed.status_code == 200 and sorted(changed.json()["members"]) == ["ann2", "reviewer"]
    assert set(AnnotatorGroup.objects.get(name="team-a").members.all()) == {second, users["reviewer"]}
    listed = engineer_client.get("/api/v1/annotator-groups/").json()
    assert [g["name"] for g in listed] == ["team-a"]


def test_a_campaign_given_a_group_is_assigned_its_active_raters(
    engineer_client, users, django_user_model, campaign_body
):
    second = make_user(django_user_model, "annotator", username="ann2")
    gone = make_user(django_user_model, "annotator", username="gone")
    gone.is_active = False
    gone.save()
    group = AnnotatorGroup.objects.create(name="team")
    group.members.add(second, gone, users["reviewer"])

    response = engineer_client.post(
        "/api/v1/campaigns/",
        {**campaign_body, "annotators": ["annotator", "ann2"], "annotator_groups": ["team"]},
        format="json",
    )

    assert response.status_code == 201, response.content
    campaign = Campaign.objects.get(name="grouped")
    assert set(campaign.annotators.all()) == {users["annotator"], second, users["reviewer"]}

    unknown = engineer_client.post(
        "/api/v1/campaigns/", {**campaign_body, "name": "x", "annotator_groups": ["nope"]}, format="json"
    )
    assert unknown.status_code == 400 and "annotator_groups" in unknown.json()


def test_groups_on_the_people_page(client, users):
    group = AnnotatorGroup.objects.create(name="night-shift")
    group.members.add(users["annotator"])
    client.force_login(users["engineer"])
    page = client.get("/people/").content.decode()

    assert 'data-group="night-shift"' in page
    row = page[page.index('data-username="annotator"') :].split("</tr>")[0]
    assert "night-shift" in row

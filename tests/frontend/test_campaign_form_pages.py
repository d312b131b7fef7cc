"""Campaigns from the browser (issue 18, item 1): the create form's specs come from the API's serializer, the
preview answers pairs of existing images (or what is missing), and open/close work through the API."""

from __future__ import annotations

import json
import re

import pytest

from core import form_schema
from feedback import services
from feedback.api import CampaignCreateSerializer
from feedback.models import Campaign, CampaignStatus
from generators import services as generator_services
from generators.models import ModelVersion
from tests.support.images import store_images, tiny_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(settings, tmp_path):
    """Two versions of one base model and a prompt set of two prompts; images (seeds 0 and 1) of the first only."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    first = ModelVersion.objects.get(base_model=base)
    second = ModelVersion.objects.create(base_model=base, name="tuned", parent=first)
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle", "a cat"])
    prompts = list(prompt_set.prompts.order_by("pk"))
    store_images(first, [(p, seed, tiny_png(10 * i + seed)) for i, p in enumerate(prompts) for seed in (0, 1)])
    return {"first": first, "second": second, "prompt_set": prompt_set}


def _specs(page: str) -> list[dict]:
    found = re.search(r'<script id="campaign-specs" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found[1])


def test_the_form_is_the_create_serializers_fields_with_choices(client, users, rows):
    client.force_login(users["engineer"])
    page = client.get("/campaigns/new/").content.decode()
    specs = {spec["name"]: spec for spec in _specs(page)}

    declared = [s["name"] for s in form_schema.describe_serializer(CampaignCreateSerializer)]
    assert list(specs) == declared
    assert {c["value"] for c in specs["model_versions"]["item"]["choices"]} == {rows["first"].pk, rows["second"].pk}
    assert [c["value"] for c in specs["prompt_set"]["choices"]] == [rows["prompt_set"].pk]
    assert [c["value"] for c in specs["annotators"]["item"]["choices"]] == ["annotator", "reviewer"]  # not engineers
    assert [c["name"] for c in specs["questions"]["item"]["children"]] == ["key", "text"]
    assert specs["votes_per_pair"]["min"] == 1 and specs["selection"]["type"] == "choice"
    assert "frontend/run_form.js" in page and "frontend/campaign_form.js" in page


def test_the_campaigns_page_links_the_form_for_engineers_and_reviewers(client, users):
    client.force_login(users["engineer"])
    page = client.get("/campaigns/").content.decode()
    assert 'href="/campaigns/new/"' in page and "POST /api/v1/campaigns/" not in page
    client.force_login(users["reviewer"])
    assert 'href="/campaigns/new/"' in client.get("/campaigns/").content.decode()
    client.force_login(users["annotator"])
    assert client.get("/campaigns/").status_code == 403


def test_a_reviewer_is_offered_arena_campaigns_only(client, users, rows):
    client.force_login(users["reviewer"])
    page = client.get("/campaigns/new/").content.decode()
    purpose = next(spec for spec in _specs(page) if spec["name"] == "purpose")
    assert [c["value"] for c in purpose["choices"]] == ["arena"] and purpose["default"] == "arena"
    assert 'id="arena-only"' in page
    client.force_login(users["engineer"])
    page = client.get("/campaigns/new/").content.decode()
    purpose = next(spec for spec in _specs(page) if spec["name"] == "purpose")
    assert [c["value"] for c in purpose["choices"]] == ["collect", "arena"] and "default" not in purpose
    assert 'id="arena-only"' not in page


@pytest.mark.parametrize("path", ["/api/v1/campaigns/", "/api/v1/campaigns/preview/"])
def test_reviewers_create_and_preview_arena_campaigns_only(client_for, users, rows, path):
    body = {
        "name": "versus",
        "purpose": "collect",
        "prompt_set": rows["prompt_set"].pk,
        "model_versions": [rows["first"].pk, rows["second"].pk],
        "annotators": ["reviewer"],
    }
    reviewer = client_for("reviewer")
    refused = reviewer.post(path, body, format="json")
    assert refused.status_code == 403
    assert "reviewers may create arena campaigns" in refused.json()["detail"]
    assert reviewer.post(path, {**body, "purpose": ["arena"]}, format="json").status_code == 403  # not a string

    answer = reviewer.post(path, {**body, "purpose": "arena"}, format="json")
    assert answer.status_code == (201 if path.endswith("/campaigns/") else 200), answer.content
    if path.endswith("/campaigns/"):
        campaign = Campaign.objects.get()
        assert (campaign.purpose, campaign.created_by, list(campaign.annotators.all())) == (
            "arena",
            users["reviewer"],
            [users["reviewer"]],
        )
    else:
        assert not Campaign.objects.exists()
    bad = reviewer.post(path, {**body, "purpose": "arena", "votes_per_pair": 0}, format="json")
    assert bad.status_code == 400 and "votes_per_pair" in bad.json()  # then the same validation as engineers'


def test_preview_shows_pairs_of_existing_images(engineer_client, rows):
    body = {"purpose": "collect", "prompt_set": rows["prompt_set"].pk, "model_versions": [rows["first"].pk]}
    response = engineer_client.post("/api/v1/campaigns/preview/", body, format="json")

    assert response.status_code == 200, response.content
    preview = response.json()
    assert (preview["images_wanted"], preview["images_missing"], preview["pairs_now"]) == (4, 0, 2)
    assert [pair["prompt"] for pair in preview["examples"]] == ["a red circle", "a cat"]
    first = preview["examples"][0]
    assert (first["image_a"]["seed"], first["image_b"]["seed"]) == (0, 1)
    assert engineer_client.get(first["image_a"]["url"]).status_code == 200
    assert not Campaign.objects.exists()


def test_preview_says_what_is_missing(engineer_client, rows):
    versions = [rows["first"].pk, rows["second"].pk]
    body = {"purpose": "arena", "prompt_set": rows["prompt_set"].pk, "model_versions": versions}
    preview = engineer_client.post("/api/v1/campaigns/preview/", body, format="json").json()
    assert (preview["images_wanted"], preview["images_missing"], preview["pairs_now"], preview["examples"]) == (
        4,
        2,
        0,
        [],
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"votes_per_pair": 0}, "votes_per_pair"),
        ({"purpose": "arena"}, "model_versions"),  # one version
        ({"images_per_prompt": 1}, "images_per_prompt"),  # one version, one seed: no pair
        ({"questions": [{"key": "Bad Key", "text": "?"}]}, "questions"),
    ],
)
def test_preview_and_create_answer_the_same_400(engineer_client, rows, change, field):
    body = {
        "name": "c",
        "purpose": "collect",
        "prompt_set": rows["prompt_set"].pk,
        "model_versions": [rows["first"].pk],
    }
    body.update(change)
    preview = engineer_client.post("/api/v1/campaigns/preview/", body, format="json")
    create = engineer_client.post("/api/v1/campaigns/", body, format="json")
    assert (preview.status_code, create.status_code) == (400, 400)
    assert field in preview.json() and preview.json() == create.json()


def test_close_then_open_again_keeps_pairs_and_votes(client_for, users, rows):
    campaign = services.campaign_create(
        name="c",
        purpose="collect",
        prompt_set=rows["prompt_set"],
        model_versions=[rows["first"]],
        annotators=[users["annotator"]],
    )
    pairs = campaign.pairs.count()
    engineer, annotator = client_for("engineer"), client_for("annotator")

    closed = engineer.post(f"/api/v1/campaigns/{campaign.pk}/close/")
    assert (closed.status_code, closed.json()["status"]) == (200, "closed")
    assert annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/").status_code == 404  # only open ones hand out

    opened = engineer.post(f"/api/v1/campaigns/{campaign.pk}/open/")
    assert (opened.status_code, opened.json()["status"]) == (200, "open")
    assert campaign.pairs.count() == pairs
    assert annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/").status_code == 200


def test_a_preparing_campaign_is_not_opened_twice(client_for, users, rows):
    campaign = services.campaign_create(
        name="p", purpose="arena", prompt_set=rows["prompt_set"], model_versions=[rows["first"], rows["second"]]
    )
    assert campaign.status == CampaignStatus.PREPARING
    response = client_for("engineer").post(f"/api/v1/campaigns/{campaign.pk}/open/")
    assert response.status_code == 409 and "preparing" in response.json()["detail"]
    assert client_for("engineer").post(f"/api/v1/campaigns/{campaign.pk}/close/").json()["status"] == "closed"


def test_open_and_close_buttons_are_for_engineers(client, users, rows):
    campaign = services.campaign_create(
        name="c", purpose="collect", prompt_set=rows["prompt_set"], model_versions=[rows["first"]]
    )
    client.force_login(users["engineer"])
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="campaign-close"' in page and 'id="campaign-open"' not in page
    services.campaign_close(campaign_id=campaign.pk)
    assert 'id="campaign-open"' in client.get(f"/campaigns/{campaign.pk}/").content.decode()
    client.force_login(users["reviewer"])
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="campaign-actions"' not in page

"""Campaigns, the hand-out policy and votes through the REST contract."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback import services
from feedback.models import Assignment, Pair, Vote
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(users, settings, tmp_path):
    """A collect campaign of 4 pairs (two seeds of one version per prompt), k=2, for the annotator."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(
        name="p", split="train", prompts=[f"prompt {i}" for i in range(4)]
    )
    for prompt in prompt_set.prompts.all():
        generator_services.generated_images_store_batch(
            model_version=version,
            settings={},
            settings_hash="0" * 64,
            images=[(prompt, seed, f"png {prompt.pk} {seed}".encode(), 8, 8) for seed in (0, 1)],
        )
    return services.campaign_create(
        name="c",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
        votes_per_pair=2,
    )


def _next(client, campaign):
    return client.get(f"/api/v1/campaigns/{campaign.pk}/next/")


def _vote(client, assignment: int, choice: str):
    return client.post("/api/v1/votes/", {"assignment": assignment, "choice": choice, "seconds": 1.5}, format="json")


def test_campaign_pairs_two_seeds_of_each_prompt(campaign):
    assert campaign.pairs.count() == 4
    assert all(p.image_a.prompt_id == p.image_b.prompt_id for p in campaign.pairs.all())


def test_next_follows_the_contract_and_is_stable_until_voted(campaign, client_for):
    annotator = client_for("annotator")
    first = _next(annotator, campaign)
    again = _next(annotator, campaign)

    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"assignment", "pair", "prompt", "left", "right", "expires_at"}
    assert body["left"]["url"] == f"/api/v1/images/{body['left']['image']}/file/"
    assert again.json()["assignment"] == body["assignment"]
    assert annotator.get(body["left"]["url"]).status_code == 200
    assert client_for("annotator").get("/api/v1/campaigns/").json()[0]["progress"]["pairs"] == 4


def test_votes_are_stored_against_images_and_resubmission_is_idempotent(campaign, client_for, users):
    annotator = client_for("annotator")
    body = _next(annotator, campaign).json()

    created = _vote(annotator, body["assignment"], "left")
    same = _vote(annotator, body["assignment"], "left")
    other = _vote(annotator, body["assignment"], "right")

    assert created.status_code == 201 and same.status_code == 200 and other.status_code == 409
    vote = Vote.objects.get()
    pair = Pair.objects.get(pk=body["pair"])
    assert vote.choice == ("a" if body["left"]["image"] == pair.image_a_id else "b")
    assert pair.valid_votes == 1


def test_skip_does_not_count_and_an_annotator_never_sees_a_pair_twice(campaign, client_for):
    annotator = client_for("annotator")
    seen = []
    while (response := _next(annotator, campaign)).status_code == 200:
        body = response.json()
        seen.append(body["pair"])
        assert _vote(annotator, body["assignment"], "skip").status_code == 201
    assert response.status_code == 204
    assert sorted(seen) == sorted(campaign.pairs.values_list("id", flat=True))
    assert set(Pair.objects.values_list("valid_votes", flat=True)) == {0}


def test_live_leases_hold_pairs_and_expired_leases_return_them(campaign, users, client_for, django_user_model):
    first = client_for("annotator")
    others = [make_user(django_user_model, "annotator", f"ann{i}") for i in range(2)]
    campaign.annotators.add(*others)
    held = _next(first, campaign).json()["pair"]
    for other in others:  # k=2: one more annotator may take the held pair, then it is full
        client = client_for("annotator")
        client.force_authenticate(other)
        while (response := _next(client, campaign)).status_code == 200:
            _vote(client, response.json()["assignment"], "tie")
    assert Pair.objects.get(pk=held).valid_votes == 1  # the live lease kept one slot for the first annotator

    Assignment.objects.filter(pair_id=held, annotator=users["annotator"]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    late = _vote(first, Assignment.objects.get(pair_id=held, annotator=users["annotator"]).pk, "left")
    assert late.status_code == 201  # the pair still needed a vote, so the late vote counts


def test_votes_validate_input_and_ownership(campaign, client_for, users):
    annotator = client_for("annotator")
    body = _next(annotator, campaign).json()
    assert _vote(annotator, body["assignment"], "upside").status_code == 400
    assert annotator.post("/api/v1/votes/", {"choice": "left"}, format="json").status_code == 400
    assert _vote(annotator, 999_999, "left").status_code == 404
    intruder = client_for("admin")  # admins hold every role, but the assignment is not theirs
    assert _vote(intruder, body["assignment"], "left").status_code == 404


def test_only_assigned_annotators_get_pairs_and_images(campaign, client_for, django_user_model):
    stranger = make_user(django_user_model, "annotator", "stranger")
    client = client_for("annotator")
    client.force_authenticate(stranger)
    assert client.get("/api/v1/campaigns/").json() == []
    assert _next(client, campaign).status_code == 404
    image = campaign.pairs.first().image_a_id
    assert client.get(f"/api/v1/images/{image}/file/").status_code == 403
    assert client_for("engineer").get(f"/api/v1/campaigns/{campaign.pk}/next/").status_code == 403


def test_arena_needs_two_versions_and_campaigns_need_images(campaign, engineer_client):
    body = {
        "name": "a",
        "purpose": "arena",
        "prompt_set": campaign.prompt_set_id,
        "model_versions": [campaign.model_versions.get().pk],
    }
    assert "model_versions" in engineer_client.post("/api/v1/campaigns/", body, format="json").json()
    empty = generator_services.base_model_register(name="empty", source="org/empty")
    body = {
        "name": "b",
        "purpose": "collect",
        "prompt_set": campaign.prompt_set_id,
        "model_versions": [empty.versions.get().pk],
    }
    response = engineer_client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 400 and "run a generation first" in response.json()["model_versions"][0]


def test_rating_page_is_for_assigned_annotators_only(campaign, client, users, django_user_model):
    url = f"/annotate/{campaign.pk}/"
    assert client.get(url).status_code == 302
    client.force_login(users["engineer"])
    assert client.get(url).status_code == 403
    client.force_login(make_user(django_user_model, "annotator", "unassigned"))
    assert client.get(url).status_code == 404
    client.force_login(users["annotator"])
    assert client.get(url).status_code == 200
    assert "shapes" not in client.get("/").content.decode() and campaign.name in client.get("/").content.decode()


def test_next_after_the_pair_on_screen_leases_a_second_one(campaign, client_for):
    annotator = client_for("annotator")
    first = _next(annotator, campaign).json()
    second = annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/?after={first['assignment']}").json()
    again = annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/?after={first['assignment']}").json()

    assert second["assignment"] != first["assignment"] and again["assignment"] == second["assignment"]
    assert annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/?after=abc").status_code == 400

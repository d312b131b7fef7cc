"""The reward-hacking audit: model-vs-people disagreements, the page, and retraining data as a new campaign."""

from __future__ import annotations

import pytest

from feedback import handout
from feedback.models import Campaign
from rewards import audit
from rewards import services as reward_services

pytestmark = pytest.mark.django_db


def _scores(voted_campaign, reward_model, agree: bool):
    """Scores 3 logits apart (p = 0.953) that back the people's majority image (or the other one) on every pair."""
    majorities = audit._majorities(voted_campaign)
    assert majorities, "the fixture's votes give at least one pair a majority"
    scores = {}
    for pair in voted_campaign.pairs.all():
        preferred_a = majorities.get(pair.pk, ("a",))[0] == "a"
        backs_a = preferred_a if agree else not preferred_a
        scores[pair.image_a_id], scores[pair.image_b_id] = (3.0, 0.0) if backs_a else (0.0, 3.0)
    reward_services.image_scores_store(reward_model=reward_model, scores=scores)


def test_audit_finds_pairs_where_the_model_backs_the_rejected_image(voted_campaign):
    model = reward_services.reward_model_register(name="rm", backbone="sandbox")
    _scores(voted_campaign, model, agree=False)

    found = audit.reward_hacking_audit(voted_campaign, model, margin=0.9)

    majorities = audit._majorities(voted_campaign)
    assert {d.pair.pk for d in found.disagreements} == set(majorities)
    assert all(d.human_choice == majorities[d.pair.pk][0] for d in found.disagreements)
    assert found.pairs_compared == len(majorities) and found.pairs_unscored == 0
    assert all(d.model_probability == pytest.approx(1 / (1 + 2.718281828**-3), rel=1e-6) for d in found.disagreements)
    assert audit.reward_hacking_audit(voted_campaign, model, margin=0.99).disagreements == []


def test_audit_campaign_endpoint_opens_a_collect_campaign_of_the_mistakes(voted_campaign, client_for, users):
    model = reward_services.reward_model_register(name="rm", backbone="sandbox")
    _scores(voted_campaign, model, agree=False)
    expected = {
        (d.pair.image_a_id, d.pair.image_b_id) for d in audit.reward_hacking_audit(voted_campaign, model).disagreements
    }

    body = {"reward_model": model.pk, "name": "mistakes"}
    url = f"/api/v1/campaigns/{voted_campaign.pk}/audit-campaign/"
    assert client_for("reviewer").post(url, body, format="json").status_code == 403  # campaigns are engineers' work

    response = client_for("engineer").post(url, body, format="json")

    assert response.status_code == 201, response.json()
    campaign = Campaign.objects.get(pk=response.json()["campaign"])
    assert campaign.purpose == "collect" and campaign.status == "open"
    assert set(campaign.pairs.values_list("image_a_id", "image_b_id")) == expected
    assert handout.next_assignment(annotator=users["annotator"], campaign=campaign) is not None
    again = client_for("engineer").post(url, body, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["name"][0]


def test_no_disagreement_is_a_400_and_annotators_are_403(voted_campaign, client_for):
    model = reward_services.reward_model_register(name="rm", backbone="sandbox")
    _scores(voted_campaign, model, agree=True)
    body = {"reward_model": model.pk, "name": "none", "margin": 0.9}
    url = f"/api/v1/campaigns/{voted_campaign.pk}/audit-campaign/"
    response = client_for("engineer").post(url, body, format="json")
    assert response.status_code == 400 and "pairs" in response.json()
    assert client_for("annotator").post(url, body, format="json").status_code == 403


def test_audit_page_lists_disagreements_with_images(voted_campaign, client, users):
    model = reward_services.reward_model_register(name="rm", backbone="sandbox")
    client.force_login(users["reviewer"])
    unscored = client.get(f"/campaigns/{voted_campaign.pk}/audit/").content.decode()
    assert "have no score yet" in unscored and 'id="evaluate-config"' in unscored
    _scores(voted_campaign, model, agree=False)

    page = client.get(f"/campaigns/{voted_campaign.pk}/audit/?reward_model={model.pk}&margin=0.9").content.decode()

    assert 'id="disagreements"' in page and "/api/v1/images/" in page and "0.953" in page
    assert 'id="make-campaign"' not in page  # reviewers audit; making the campaign is engineers' work
    client.force_login(users["engineer"])
    engineer_page = client.get(f"/campaigns/{voted_campaign.pk}/audit/?reward_model={model.pk}&margin=0.9")
    assert 'id="make-campaign"' in engineer_page.content.decode()
    client.force_login(users["annotator"])
    assert client.get(f"/campaigns/{voted_campaign.pk}/audit/").status_code == 403

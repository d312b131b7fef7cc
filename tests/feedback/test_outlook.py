"""Why an annotator has nothing to rate, and when to come back (``feedback.outlook``, its API and the pages)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import Assignment, Pair
from feedback.outlook import rating_outlook
from tests.conftest import make_user
from tests.feedback import test_campaigns_and_votes as votes_api
from tests.feedback.test_campaigns_and_votes import _next, _vote

pytestmark = pytest.mark.django_db
campaign = votes_api.campaign  # the fixture: 4 pairs, k = 2, the annotator alone


def _skip_everything(client, campaign) -> None:
    while (response := _next(client, campaign)).status_code == 200:
        assert _vote(client, response.json()["assignment"], "skip").status_code == 201


def test_a_fresh_campaign_has_pairs_for_its_annotator(campaign, users):
    outlook = rating_outlook(campaign, users["annotator"])

    assert outlook.state == "can_rate" and outlook.open_to_you == 4 and outlook.pairs_needing_votes == 4


def test_after_skipping_everything_the_annotator_is_told_others_must_finish(campaign, users, client_for):
    _skip_everything(client_for("annotator"), campaign)

    outlook = rating_outlook(campaign, users["annotator"])

    assert outlook.state == "done_for_you" and outlook.seen_by_you == 4
    assert outlook.stalled == 4  # the only annotator assigned has seen every pair: nobody can finish them
    assert "add annotators" in outlook.message


def test_pairs_leased_by_others_mean_waiting_until_the_first_lease_lapses(campaign, users, django_user_model):
    other = make_user(django_user_model, "annotator", "other")
    campaign.annotators.add(other)
    now = timezone.now()
    expiries = []
    for index, pair in enumerate(Pair.objects.filter(campaign=campaign, is_gold=False)):
        Pair.objects.filter(pk=pair.pk).update(valid_votes=1)  # k = 2: one more vote each, leased by `other`
        expires = now + timedelta(minutes=3 + index)
        Assignment.objects.create(pair=pair, annotator=other, a_on_left=True, expires_at=expires)
        expiries.append(expires)

    outlook = rating_outlook(campaign, users["annotator"], now=now)

    assert outlook.state == "waiting" and outlook.leased_by_others == 4 and outlook.open_to_you == 0
    assert outlook.retry_at == min(expiries) and outlook.stalled == 0
    assert "try again in about 3 minute" in outlook.message
    later = rating_outlook(campaign, users["annotator"], now=min(expiries) + timedelta(seconds=1))
    assert later.state == "can_rate" and later.open_to_you == 1  # the first lease lapsed: its pair is back


def test_a_complete_campaign_says_so(campaign, users):
    Pair.objects.filter(campaign=campaign).update(valid_votes=2)

    assert rating_outlook(campaign, users["annotator"]).state == "complete"


def test_the_outlook_api_answers_the_campaigns_raters(campaign, client_for):
    _skip_everything(client_for("annotator"), campaign)

    response = client_for("annotator").get(f"/api/v1/campaigns/{campaign.pk}/outlook/")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "done_for_you" and body["stalled"] == 4 and body["retry_at"] is None
    assert client_for("annotator").get("/api/v1/campaigns/999999/outlook/").status_code == 404


def test_the_pages_explain_nothing_to_do(campaign, users, client, client_for):
    _skip_everything(client_for("annotator"), campaign)
    client.force_login(users["annotator"])

    home = client.get("/").content.decode()
    assert "You have rated every pair you can" in home

    campaign.status = "closed"
    campaign.save(update_fields=["status"])
    home = client.get("/").content.decode()
    assert "None of your campaigns is open" in home and "closed, no more votes are collected" in home

    client.force_login(users["engineer"])
    campaign.status = "open"
    campaign.save(update_fields=["status"])
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'id="stalled"' in page and "until you add annotators" in page


def test_an_annotator_with_no_campaign_is_told_why(users, client):
    client.force_login(users["annotator"])

    assert "No campaign has been assigned to you yet" in client.get("/").content.decode()

"""The ``selection_refit`` run: the trigger (due, de-duplicated), priorities and a learning curve, a real worker."""

from __future__ import annotations

import pytest

from core import services as run_services
from core.events import send_periodic_check, send_run_finished
from core.models import Run
from core.run_execution import run_execute
from feedback import handout
from feedback.models import Pair
from rewards import services as reward_services
from rewards.models import CampaignCurvePoint, CampaignRefit
from tests.conftest import make_user
from tests.support.refit_campaign import FAST, PROMPTS, grey_campaign, vote


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"ensemble_size": 0}, "ensemble_size"), ({"head": "x"}, "head"), ({"test_fraction": 0.9}, "test_fraction")],
)
def test_bad_refit_configs_are_400_naming_the_field(media, users, django_user_model, engineer_client, overrides, field):
    campaign, _ = grey_campaign(users, django_user_model)
    body = {"kind": "selection_refit", "config": {"campaign": campaign.pk, **overrides}}
    response = engineer_client.post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and field in response.json().get("config", {}), response.json()


@pytest.mark.django_db
def test_unknown_and_arena_campaigns_are_refused(media, users, django_user_model, engineer_client):
    from feedback.models import Campaign

    campaign, _ = grey_campaign(users, django_user_model)
    Campaign.objects.filter(pk=campaign.pk).update(purpose="arena")
    for pk in (10**9, campaign.pk):
        body = {"kind": "selection_refit", "config": {"campaign": pk}}
        response = engineer_client.post("/api/v1/runs/", body, format="json")
        assert response.status_code == 400 and "campaign" in response.json()["config"], response.json()


@pytest.mark.django_db
def test_the_trigger_starts_one_refit_per_campaign_when_due(
    media, users, django_user_model, django_capture_on_commit_callbacks
):
    fresh, annotators = grey_campaign(users, django_user_model, name="fresh")
    plain, _ = grey_campaign(users, django_user_model, selection="random", name="plain")
    started = reward_services.campaign_refits_start_due()
    # A new uncertainty campaign at once (first priorities from zero-shot); a random one only with votes.
    assert [r.campaign_id for r in started] == [fresh.pk]
    assert reward_services.campaign_refits_start_due() == []  # its refit is still queued
    first = started[0]
    assert first.run.kind == "selection_refit" and first.run.queue == "gpu" and first.votes == 0

    first.run.state = "succeeded"
    first.run.save(update_fields=["state"])
    send_run_finished(first.run, "succeeded")
    assert not CampaignRefit.objects.get(pk=first.pk).active
    vote(fresh, annotators, 4)  # 8 valid votes: fewer than refit_every (10)
    assert reward_services.campaign_refits_start_due() == []
    vote(fresh, annotators[:1], 2)  # 10 since the last refit
    vote(plain, annotators, 5)  # 10: the random campaign's first refit (its curve)
    again = reward_services.campaign_refits_start_due()
    assert sorted((r.campaign_id, r.votes) for r in again) == sorted([(fresh.pk, 10), (plain.pk, 10)])

    # A refit whose run ended without the event (its process died) is released by the periodic check.
    Run.objects.filter(pk__in=[r.run_id for r in again]).update(state="failed")
    send_periodic_check()
    assert not CampaignRefit.objects.filter(active=True).exists()  # released, and none due (no new votes)


@pytest.mark.django_db
def test_a_second_active_refit_of_a_campaign_is_refused_by_the_database(media, users, django_user_model):
    campaign, _ = grey_campaign(users, django_user_model)
    assert reward_services._campaign_refit_start(campaign.pk, 0, None) is not None
    runs = Run.objects.count()
    assert reward_services._campaign_refit_start(campaign.pk, 0, None) is None  # the race's loser
    assert Run.objects.count() == runs and CampaignRefit.objects.filter(campaign=campaign).count() == 1


@pytest.mark.django_db(transaction=True)  # the run's heartbeats commit while it fits
def test_a_refit_writes_priorities_a_curve_and_the_endpoint_shows_them(media, users, django_user_model, client_for):
    campaign, annotators = grey_campaign(users, django_user_model)
    vote(campaign, annotators, 16)  # 32 votes on 16 pairs, 8 pairs left fresh
    Pair.objects.filter(campaign=campaign).update(priority=-1.0)  # priorities are >= 0: the refit's are new
    run = run_services.run_create(kind="selection_refit", config={"campaign": campaign.pk, **FAST})
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()

    refit = CampaignRefit.objects.get(run=run)
    assert refit.used_votes == 32 and refit.priority_source == "model" and refit.priorities == 8
    fresh = Pair.objects.filter(campaign=campaign, valid_votes=0)
    assert fresh.count() == 8 and all(p.priority >= 0 for p in fresh)
    points = list(CampaignCurvePoint.objects.filter(refit=refit).values_list("votes", "accuracy"))
    assert [votes for votes, _ in points] == [16, 32] and points[-1][1] is not None
    assert refit.human_ceiling == 1.0 and refit.ceiling_pairs == 16  # two agreeing votes on every voted pair
    assert run.result["priorities"] == 8 and run.result["heldout_decisive_accuracy"] == points[-1][1]

    # The hand-out follows the new priorities: the first fresh pair handed out has the highest.
    newcomer = make_user(django_user_model, "annotator", "newcomer")
    campaign.annotators.add(newcomer)
    lease = handout.next_assignment(annotator=newcomer, campaign=campaign)
    assert lease.pair == max(fresh, key=lambda p: (p.priority, -p.pk)).pk

    body = client_for("reviewer").get(f"/api/v1/campaigns/{campaign.pk}/learning-curve/").json()
    assert body["latest"]["run"] == run.pk and [p["votes"] for p in body["latest"]["points"]] == [16, 32]
    assert body["latest"]["human_ceiling"] == 1.0 and body["history"][-1]["votes"] == 32 and body["advice"]
    assert client_for("annotator").get(f"/api/v1/campaigns/{campaign.pk}/learning-curve/").status_code == 403


@pytest.mark.django_db(transaction=True)  # the run's heartbeats commit while it fits
def test_a_random_campaign_gets_a_curve_but_keeps_its_priorities(media, users, django_user_model):
    campaign, annotators = grey_campaign(users, django_user_model, selection="random")
    vote(campaign, annotators, 12)
    run = run_services.run_create(kind="selection_refit", config={"campaign": campaign.pk, **FAST})
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    refit = CampaignRefit.objects.get(run=run)
    assert refit.priorities == 0 and refit.priority_source == "none" and refit.points.exclude(accuracy=None).exists()
    assert set(Pair.objects.filter(campaign=campaign).values_list("priority", flat=True)) == {0.0}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_the_periodic_check_starts_a_refit_that_a_real_worker_runs(start_worker, users, django_user_model):
    from tests.support.workers import wait_until

    campaign, annotators = grey_campaign(users, django_user_model, refit_every=10_000)  # no second automatic refit
    start_worker()
    send_periodic_check()  # a new uncertainty campaign: its first refit, zero-shot priorities
    refit = CampaignRefit.objects.get(campaign=campaign)
    done = wait_until(lambda: (r := Run.objects.get(pk=refit.run_id)).is_terminal and r, timeout=240, what="refit")
    assert done.state == "succeeded", done.error
    refit.refresh_from_db()
    assert refit.priority_source == "zero_shot" and refit.priorities == PROMPTS and not refit.active
    assert Pair.objects.filter(campaign=campaign).exclude(priority=0.0).count() == PROMPTS

    vote(campaign, annotators, 16)
    run = run_services.run_create(kind="selection_refit", config={"campaign": campaign.pk, **FAST})
    done = wait_until(lambda: (r := Run.objects.get(pk=run.pk)).is_terminal and r, timeout=240, what="second refit")
    assert done.state == "succeeded", done.error
    second = CampaignRefit.objects.get(run=run)
    assert second.priority_source == "model" and second.points.exclude(accuracy=None).count() == 2

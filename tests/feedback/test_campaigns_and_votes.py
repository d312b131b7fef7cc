"""Campaigns, the hand-out policy and votes through the REST contract."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from feedback import handout, services
from feedback.models import Assignment, Pair, Vote
from generators import services as generator_services
from generators.models import ModelVersion, PromptSet
from generators.sampler_settings import SettingsRequest
from tests.conftest import make_user
from tests.support.images import store_images

pytestmark = pytest.mark.django_db


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


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
        store_images(version, [(prompt, seed, _png(prompt.pk * 10 + seed)) for seed in (0, 1)])
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


def _token(body) -> str:
    return Assignment.objects.get(pk=body["assignment"]).image_token


def _a_on_left(body) -> bool:
    """Whether the pair's image a is on the left of the pair ``next/`` answered with (the API does not say)."""
    return Assignment.objects.get(pk=body["assignment"]).a_on_left


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
    assert body["left"] == {"url": f"/api/v1/rating-images/{_token(body)}/left/"}
    assert body["right"] == {"url": f"/api/v1/rating-images/{_token(body)}/right/"}
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
    assert vote.choice == ("a" if _a_on_left(body) else "b")
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


def test_arena_needs_two_versions_and_one_version_needs_two_images_per_prompt(campaign, engineer_client):
    body = {
        "name": "a",
        "purpose": "arena",
        "prompt_set": campaign.prompt_set_id,
        "model_versions": [campaign.model_versions.get().pk],
    }
    assert "model_versions" in engineer_client.post("/api/v1/campaigns/", body, format="json").json()
    body = {**body, "name": "b", "purpose": "collect", "images_per_prompt": 1}
    response = engineer_client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 400 and "at least 2" in response.json()["images_per_prompt"][0]


def test_a_campaign_with_missing_images_generates_them_then_opens(
    users, engineer_client, settings, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    from core.models import Run
    from core.run_execution import run_execute

    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    texts = list(PromptSet.objects.get(name="sandbox-train").prompts.values_list("text", flat=True)[:2])
    prompts = generator_services.prompt_set_create(name="two", split="train", prompts=texts)
    body = {"name": "fresh", "purpose": "collect", "prompt_set": prompts.pk, "model_versions": [version.pk]}
    body["annotators"] = ["annotator"]

    created = engineer_client.post("/api/v1/campaigns/", body, format="json")

    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "preparing" and created.json()["images_per_prompt"] == 2
    run = Run.objects.get(pk=created.json()["preparing_run"])
    assert run.kind == "generate" and run.config["images_per_prompt"] == 2
    assert run.config["model_versions"] == [version.pk] and run.config["prompt_set"] == prompts.pk
    with django_capture_on_commit_callbacks(execute=True):
        assert run_execute(run_id=run.pk, worker="inline") == "succeeded"
    campaign = services.Campaign.objects.get(pk=created.json()["id"])
    assert campaign.status == "open" and campaign.pairs.count() == 2


def test_a_campaign_whose_generation_fails_returns_to_draft(campaign, users, django_capture_on_commit_callbacks):
    from core import services as run_services

    empty = generator_services.base_model_register(name="empty", source="org/empty")
    pending = services.campaign_create(
        name="pending",
        purpose="collect",
        prompt_set=campaign.prompt_set,
        model_versions=[empty.versions.get()],
    )
    assert pending.status == "preparing"
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_fail(run_id=pending.preparing_run_id, attempt=None, error="no such checkpoint")
    pending.refresh_from_db()
    assert pending.status == "draft" and not pending.pairs.exists()


def test_a_taken_campaign_name_is_400_even_in_a_race(campaign, engineer_client, monkeypatch):
    body = {
        "name": campaign.name,
        "purpose": "collect",
        "prompt_set": campaign.prompt_set_id,
        "model_versions": [campaign.model_versions.get().pk],
    }
    assert "already exists" in engineer_client.post("/api/v1/campaigns/", body, format="json").json()["name"][0]
    real_filter = services.Campaign.objects.filter
    hidden = []

    def filter_missing_the_name_once(**kwargs):
        # The race: the first check sees no campaign of that name; the insert then hits the constraint.
        if "name" in kwargs and not hidden:
            hidden.append(kwargs["name"])
            return real_filter(pk=-1)
        return real_filter(**kwargs)

    monkeypatch.setattr(services.Campaign.objects, "filter", filter_missing_the_name_once)
    with pytest.raises(services.ValidationError, match="already exists"):
        services.campaign_create(
            name=campaign.name,
            purpose="collect",
            prompt_set=campaign.prompt_set,
            model_versions=[campaign.model_versions.get()],
        )
    assert hidden == [campaign.name]


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


def test_a_vote_can_bring_the_next_pair_in_one_request(campaign, client_for):
    annotator = client_for("annotator")
    on_screen = _next(annotator, campaign).json()
    preloaded = annotator.get(f"/api/v1/campaigns/{campaign.pk}/next/?after={on_screen['assignment']}").json()

    def vote_and_next(assignment: int, after: int | None):
        body = {"assignment": assignment, "choice": "left", "next": True, "after": after}
        return annotator.post("/api/v1/votes/", body, format="json")

    answer = vote_and_next(on_screen["assignment"], preloaded["assignment"])
    assert answer.status_code == 201
    following = answer.json()["next"]
    assert set(following) == {"assignment", "pair", "prompt", "left", "right", "expires_at"}
    assert len({on_screen["pair"], preloaded["pair"], following["pair"]}) == 3
    assert Vote.objects.get().assignment_id == on_screen["assignment"]
    # Without "next" the answer is the vote alone; resubmitting is still idempotent and may ask for the next pair.
    assert (
        "next"
        not in annotator.post(
            "/api/v1/votes/", {"assignment": preloaded["assignment"], "choice": "tie"}, format="json"
        ).json()
    )
    again = vote_and_next(on_screen["assignment"], preloaded["assignment"])
    assert again.status_code == 200 and again.json()["next"]["assignment"] == following["assignment"]
    last = vote_and_next(following["assignment"], None).json()["next"]
    assert vote_and_next(last["assignment"], None).json()["next"] is None  # all 4 pairs rated
    bad = annotator.post(
        "/api/v1/votes/", {"assignment": last["assignment"], "choice": "left", "next": "x"}, format="json"
    )
    assert bad.status_code == 400 and "next" in bad.json()


def test_the_search_looks_past_the_in_progress_window_only_when_fresh_pairs_are_gone(
    campaign, users, django_user_model, monkeypatch
):
    """A lone annotator's rated pairs stay in progress: the next one comes from the fresh pairs first, and
    pairs deeper in progress than the window are still found once no fresh pair is left."""
    monkeypatch.setattr(handout, "IN_PROGRESS_WINDOW", 1)
    first, second = users["annotator"], make_user(django_user_model, "annotator", "second")
    campaign.annotators.add(second)
    order = list(campaign.pairs.order_by("id").values_list("id", flat=True))

    def rate_all(annotator, first_choice: str = "left") -> list[int]:
        rated = []
        while (lease := handout.next_assignment(annotator=annotator, campaign=campaign)) is not None:
            choice = first_choice if not rated else "left"
            services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted=choice)
            rated.append(lease.pair)
        return rated

    assert rate_all(first) == order  # the window holds a pair this annotator rated: fresh pairs, oldest first
    # The second annotator skips the window's pair, so it stays there, seen; no pair is fresh any more, so the
    # others are found past the window.
    assert rate_all(second, first_choice="skip") == order
    assert list(Pair.objects.order_by("id").values_list("valid_votes", flat=True)) == [1, 2, 2, 2]


def _rate_everything(client, campaign, choose) -> None:
    while (response := _next(client, campaign)).status_code == 200:
        body = response.json()
        pair = Pair.objects.get(pk=body["pair"])
        _vote(client, body["assignment"], choose(pair, body))


def test_gold_quality_flagging_and_export_leave_out_flagged_annotators(
    campaign, client_for, users, django_user_model, tmp_path
):
    from django.core.management import call_command

    from feedback.pickapic import read_parquet

    engineer = client_for("engineer")
    campaign.gold_rate = 1.0  # offer the gold pair first
    campaign.save(update_fields=["gold_rate"])
    gold_pair = campaign.pairs.first()
    assert (
        engineer.post(
            f"/api/v1/campaigns/{campaign.pk}/gold/", {"pair": gold_pair.pk, "choice": "a"}, format="json"
        ).status_code
        == 200
    )
    assert (
        engineer.post(
            f"/api/v1/campaigns/{campaign.pk}/gold/", {"pair": gold_pair.pk, "choice": "left"}, format="json"
        ).status_code
        == 400
    )
    sloppy = make_user(django_user_model, "annotator", "sloppy")
    campaign.annotators.add(sloppy)
    sloppy_client = client_for("annotator")
    sloppy_client.force_authenticate(sloppy)

    def image_a_side(pair, body):  # always picks image a, which is right on the gold pair
        return "left" if _a_on_left(body) else "right"

    def image_b_side(pair, body):
        return "right" if _a_on_left(body) else "left"

    _rate_everything(client_for("annotator"), campaign, image_a_side)
    _rate_everything(sloppy_client, campaign, image_b_side)

    quality = engineer.get(f"/api/v1/campaigns/{campaign.pk}/quality/?min_gold=1").json()
    rows = {row["annotator"]: row for row in quality["annotators"]}
    assert rows["annotator"]["gold_accuracy"] == 1.0 and not rows["annotator"]["flagged"]
    assert rows["sloppy"]["gold_accuracy"] == 0.0 and rows["sloppy"]["flagged"]
    assert quality["krippendorff_alpha"] < 0  # the two always disagree
    assert engineer.get(f"/api/v1/campaigns/{campaign.pk}/quality/?threshold=2").status_code == 400

    out = tmp_path / "votes.parquet"
    call_command(
        "export_votes", campaign=campaign.pk, out=str(out), gold_threshold=0.7, min_gold=1, stdout=io.StringIO()
    )
    rows_out = read_parquet(out, check_images=False)
    assert len(rows_out) == 3  # the annotator's votes on the 3 regular pairs; sloppy is flagged, gold left out
    assert {(r.label_0, r.label_1) for r in rows_out} == {(1.0, 0.0)}
    assert Vote.objects.filter(annotator=sloppy).count() == 4  # flagged votes are kept, only not exported


def test_engineer_campaign_pages_show_progress_quality_and_votes_over_time(campaign, client, users, client_for):
    annotator = client_for("annotator")
    for _ in range(3):
        body = _next(annotator, campaign).json()
        assert _vote(annotator, body["assignment"], "left").status_code == 201
    client.force_login(users["engineer"])

    listing = client.get("/campaigns/")
    detail = client.get(f"/campaigns/{campaign.pk}/")

    assert listing.status_code == 200 and campaign.name in listing.content.decode()
    page = detail.content.decode()
    assert detail.status_code == 200
    assert "<strong>3</strong> of 8 valid votes on 4 pairs" in page
    assert detail.context["quality"]["annotators"][0]["votes"] == 3
    assert detail.context["activity"][-1] == {**detail.context["activity"][-1], "votes": 3, "valid_votes": 3}
    assert 'id="activity-data"' in page and "chart.umd.min.js" in page
    assert f'href="/gallery/?campaign={campaign.pk}"' in page and "dtype <strong>fp32</strong>" in page
    activity = client_for("reviewer").get(f"/api/v1/campaigns/{campaign.pk}/activity/").json()
    assert activity["progress"]["valid_votes"] == 3 and activity["points"][-1]["valid_votes"] == 3


def test_campaign_pages_are_for_engineers_and_reviewers(campaign, client, users):
    assert client.get("/campaigns/").status_code == 302
    client.force_login(users["annotator"])
    assert client.get("/campaigns/").status_code == 403
    assert client.get(f"/campaigns/{campaign.pk}/").status_code == 403
    client.force_login(users["reviewer"])
    assert client.get(f"/campaigns/{campaign.pk}/").status_code == 200


def test_votes_over_time_bins_cumulative_counts(campaign, client_for):
    from feedback.selectors import votes_over_time

    assert votes_over_time(campaign) == []
    annotator = client_for("annotator")
    for choice in ("left", "skip", "right"):
        body = _next(annotator, campaign).json()
        _vote(annotator, body["assignment"], choice)
    start = timezone.now() - timedelta(hours=1)
    for offset, vote in enumerate(Vote.objects.order_by("id")):
        Vote.objects.filter(pk=vote.pk).update(created_at=start + timedelta(minutes=30 * offset))

    points = votes_over_time(campaign, max_points=4)

    # Bins of 15 minutes; a vote exactly on a bin's end belongs to that bin.
    assert [(p["votes"], p["valid_votes"]) for p in points] == [(1, 1), (2, 1), (2, 1), (3, 2)]


def test_fresh_pairs_are_found_through_the_hand_out_index_whatever_the_statistics(campaign, users):
    """PostgreSQL: statistics taken while every pair was fresh must not send the fresh-pair search along the
    primary key, where it steps over every completed pair (they cluster at low ids) on each hand-out."""
    from django.db import connection

    from generators.models import GeneratedImage

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL planner check")
    template = GeneratedImage.objects.first()
    images = GeneratedImage.objects.bulk_create(
        GeneratedImage(
            model_version=template.model_version,
            prompt=template.prompt,
            seed=1000 + i,
            settings={},
            settings_hash="1" * 64,
            file=f"plan/{i}.png",
            sha256="0" * 64,
            width=8,
            height=8,
        )
        for i in range(60)
    )
    Pair.objects.bulk_create(
        Pair(campaign=campaign, image_a=a, image_b=b) for a in images for b in images if a.pk != b.pk
    )  # 3,540 more pairs
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_pair")  # every pair fresh
        completed = list(campaign.pairs.order_by("id").values_list("id", flat=True))[:-40]
        Pair.objects.filter(pk__in=completed).update(valid_votes=campaign.votes_per_pair)
        params = {"campaign": campaign.pk, "annotator": users["annotator"].pk, "k": campaign.votes_per_pair}
        sql = handout._REGULAR_CANDIDATE_SQL.format(
            band=handout._REGULAR_BANDS[1], order=handout._HANDOUT_ORDER, not_tried=""
        )
        cursor.execute("EXPLAIN " + sql, {**params, "now": timezone.now(), "gold": False})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "pair_handout_order" in plan, plan


def _two_versions_with_20_and_50_step_images(prompt_set):
    """Two versions of one base; each (version, prompt, seed 0) has a 20-step (the default) and a 50-step image,
    stored in opposite orders so that neither "first by id" nor "last by id" picks one kind for both."""
    base = generator_services.base_model_register(name="two", source="org/two")
    first = ModelVersion.objects.get(base_model=base)
    second = ModelVersion.objects.create(base_model=base, name="tuned", parent=first)
    fifty = SettingsRequest(steps=50)
    for shade, prompt in enumerate(prompt_set.prompts.all()):
        store_images(first, [(prompt, 0, _png(100 + shade))], settings=fifty)
        store_images(first, [(prompt, 0, _png(110 + shade))])
        store_images(second, [(prompt, 0, _png(120 + shade))])
        store_images(second, [(prompt, 0, _png(130 + shade))], settings=fifty)
    return first, second


@pytest.mark.parametrize(
    ("asked", "steps"), [(None, 20), (SettingsRequest(steps=20), 20), (SettingsRequest(steps=50), 50)]
)
def test_an_arena_pairs_only_images_of_its_sampler_settings(campaign, asked, steps):
    first, second = _two_versions_with_20_and_50_step_images(campaign.prompt_set)

    arena = services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=campaign.prompt_set,
        model_versions=[first, second],
        **({"sampler_settings": asked} if asked else {}),
    )

    assert arena.status == "open" and arena.pairs.count() == campaign.prompt_set.prompts.count()
    for pair in arena.pairs.select_related("image_a", "image_b"):
        assert {pair.image_a.model_version_id, pair.image_b.model_version_id} == {first.pk, second.pk}
        assert pair.image_a.settings["steps"] == pair.image_b.settings["steps"] == steps
        assert pair.image_a.settings_hash == pair.image_b.settings_hash
    assert arena.sampler_settings == {**({"steps": steps} if asked else {}), "dtype": "fp32"}


def test_a_campaign_records_its_settings_and_generates_its_images_with_them(campaign, engineer_client):
    body = {
        "name": "fifty",
        "purpose": "collect",
        "prompt_set": campaign.prompt_set_id,
        "model_versions": [campaign.model_versions.get().pk],
        "sampler_settings": {"steps": 50, "guidance_scale": 7.5},
    }

    created = engineer_client.post("/api/v1/campaigns/", body, format="json")

    assert created.status_code == 201, created.json()
    # The 20-step images of the fixture are not these: the campaign waits for its own.
    assert created.json()["status"] == "preparing"
    assert created.json()["sampler_settings"] == {"steps": 50, "guidance_scale": 7.5}
    run = services.Campaign.objects.get(pk=created.json()["id"]).preparing_run
    assert run.config["steps"] == 50 and run.config["guidance_scale"] == 7.5
    bad = engineer_client.post(
        "/api/v1/campaigns/", {**body, "name": "bad", "sampler_settings": {"steps": 0}}, format="json"
    )
    assert bad.status_code == 400 and "steps" in bad.json()["sampler_settings"]


def test_the_campaigns_page_reads_progress_in_the_same_query_whatever_the_number_of_campaigns(
    campaign, client, users, django_assert_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(users["engineer"])
    with CaptureQueriesContext(connection) as one_campaign:
        assert client.get("/campaigns/").status_code == 200
    for n in range(3):
        services.campaign_from_pairs(source=campaign, pairs=campaign.pairs.all()[:2], name=f"copy-{n}")

    with django_assert_num_queries(len(one_campaign.captured_queries)):
        page = client.get("/campaigns/")

    assert page.status_code == 200 and "copy-2" in page.content.decode()
    progress = [row[1] for row in page.context["campaigns"]]
    assert progress[0]["pairs"] == 2 and progress[-1]["pairs"] == 4 and progress[-1]["votes_wanted"] == 8

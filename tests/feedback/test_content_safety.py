"""Content safety: reports withhold an image from every campaign and from training; engineers review; blocklists."""

from __future__ import annotations

import io

import pytest

from feedback import exports, handout, safety, services
from feedback.blocklist import BlocklistError, blocked_prompts, blocked_term, normalise_terms
from feedback.models import Assignment, FlagState, ImageFlag, ImageReport, Pair
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images, tiny_png

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(users, settings, tmp_path):
    """One version, 4 prompts × 2 seeds; two open campaigns over the same images (k=2) for the annotator."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(
        name="p", split="train", prompts=["a red car", "a blue house", "a green tree", "a dog"]
    )
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, tiny_png(prompt.pk * 10 + seed)) for seed in (0, 1)])
    campaigns = [
        services.campaign_create(
            name=name,
            purpose="collect",
            prompt_set=prompt_set,
            model_versions=[version],
            annotators=[users["annotator"]],
            votes_per_pair=2,
        )
        for name in ("first", "second")
    ]
    return {"version": version, "prompt_set": prompt_set, "campaigns": campaigns}


def _shown(client, campaign) -> dict:
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/next/")
    assert response.status_code == 200, response.content
    return response.json()


def _image_on(body: dict, side: str) -> int:
    assignment = Assignment.objects.select_related("pair").get(pk=body["assignment"])
    left = assignment.pair.image_a_id if assignment.a_on_left else assignment.pair.image_b_id
    right = assignment.pair.image_b_id if assignment.a_on_left else assignment.pair.image_a_id
    return left if side == "left" else right


def test_a_report_withdraws_the_image_from_every_campaign_and_the_next_pair_moves_on(world, client_for, users):
    annotator = client_for("annotator")
    first, second = world["campaigns"]
    shown = _shown(annotator, first)
    reported = _image_on(shown, "right")

    response = annotator.post(
        "/api/v1/reports/",
        {"assignment": shown["assignment"], "side": "right", "reason": "offensive", "note": "rude gesture"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json() == {"images": 1, "withheld": 1, "pairs_withdrawn": 2, "created": True}
    flag = ImageFlag.objects.get(image_id=reported)
    assert flag.state == FlagState.WITHDRAWN
    report = flag.reports.get()
    assert (report.reporter.username, report.reason, report.note, report.campaign_id) == (
        "annotator",
        "offensive",
        "rude gesture",
        first.pk,
    )
    showing = Pair.objects.filter(image_a_id=reported) | Pair.objects.filter(image_b_id=reported)
    assert {pair.campaign_id for pair in showing} == {first.pk, second.pk}
    assert all(pair.withdrawn for pair in showing)
    # The lease on screen is gone: its images 404, a vote on it is refused, and the next pair is another one.
    assert annotator.get(shown["left"]["url"]).status_code == 404
    vote = annotator.post("/api/v1/votes/", {"assignment": shown["assignment"], "choice": "left"}, format="json")
    assert vote.status_code == 409
    assert "withdrawn" in vote.json()["detail"]
    seen = set()
    for campaign in (first, second):
        while (lease := handout.next_assignment(annotator=users["annotator"], campaign=campaign)) is not None:
            seen.add(lease.pair)
            services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="left")
    assert seen.isdisjoint({pair.pk for pair in showing})
    assert len(seen) == 8 - 2  # 8 pairs in all, 2 withdrawn (the one on screen among them)


def test_the_same_report_again_changes_nothing_and_another_annotator_adds_a_report(world, client_for, users):
    annotator = client_for("annotator")
    shown = _shown(annotator, world["campaigns"][0])
    body = {"assignment": shown["assignment"], "side": "both", "reason": "unsafe"}

    assert annotator.post("/api/v1/reports/", body, format="json").status_code == 201
    again = annotator.post("/api/v1/reports/", body, format="json")

    assert again.status_code == 200
    assert again.json()["created"] is False
    assert ImageReport.objects.count() == 2  # both images, once each
    assert ImageFlag.objects.count() == 2


def test_reports_validate_input_and_only_the_holder_may_report(world, client_for, users, django_user_model):
    annotator = client_for("annotator")
    shown = _shown(annotator, world["campaigns"][0])
    bad = annotator.post(
        "/api/v1/reports/", {"assignment": shown["assignment"], "side": "top", "reason": "meh"}, format="json"
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"side", "reason"}
    long_note = {"assignment": shown["assignment"], "side": "left", "reason": "unsafe", "note": "x" * 501}
    assert annotator.post("/api/v1/reports/", long_note, format="json").status_code == 400

    other = make_user(django_user_model, "annotator", "other")
    world["campaigns"][0].annotators.add(other)
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(other)
    response = client.post(
        "/api/v1/reports/", {"assignment": shown["assignment"], "side": "left", "reason": "unsafe"}, format="json"
    )
    assert response.status_code == 404
    assert not ImageFlag.objects.exists()


def test_votes_on_withdrawn_pairs_leave_the_dataset_snapshot_and_progress(world, client_for, users):
    annotator = users["annotator"]
    campaign = world["campaigns"][0]
    while (lease := handout.next_assignment(annotator=annotator, campaign=campaign)) is not None:
        services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted="left")
    rows_before, _ = exports.pickapic_rows([campaign])
    assert len(rows_before) == 4
    pair = campaign.pairs.order_by("id").first()
    assignment = Assignment.objects.get(pair=pair, annotator=annotator)

    safety.image_report(reporter=annotator, assignment_id=assignment.pk, side="left", reason="unsafe")

    rows_after, _ = exports.pickapic_rows([campaign])
    assert len(rows_after) == 3
    withdrawn = {pair.image_a.sha256, pair.image_b.sha256}
    assert all({row.image_0_uid, row.image_1_uid} != withdrawn for row in rows_after)
    dataset = client_for("engineer").post(
        "/api/v1/datasets/", {"name": "snap", "campaigns": [campaign.pk]}, format="json"
    )
    assert dataset.status_code == 201, dataset.content
    assert dataset.json()["rows"] == 3
    progress = client_for("engineer").get("/api/v1/campaigns/").json()
    assert next(c for c in progress if c["id"] == campaign.pk)["progress"]["pairs"] == 3


def test_engineers_review_clear_returns_the_pairs_and_confirm_keeps_them_out(world, client_for, users):
    annotator = users["annotator"]
    campaign = world["campaigns"][0]
    lease = handout.next_assignment(annotator=annotator, campaign=campaign)
    safety.image_report(reporter=annotator, assignment_id=lease.assignment, side="both", reason="unsafe")
    engineer = client_for("engineer")
    listed = engineer.get("/api/v1/image-flags/?state=withdrawn")
    assert listed.status_code == 200
    flags = listed.json()["results"]
    assert len(flags) == 2
    assert {flag["pairs"] for flag in flags} == {2}
    assert flags[0]["reports"][0]["reporter"] == "annotator"
    keep, give_back = flags

    confirmed = engineer.post(f"/api/v1/image-flags/{keep['id']}/review/", {"decision": "confirm"}, format="json")
    cleared = engineer.post(
        f"/api/v1/image-flags/{give_back['id']}/review/", {"decision": "clear", "note": "fine"}, format="json"
    )

    assert confirmed.json()["state"] == "confirmed"
    assert (cleared.json()["state"], cleared.json()["review_note"], cleared.json()["reviewed_by"]) == (
        "cleared",
        "fine",
        "engineer",
    )
    # Each campaign pairs the two seeds of a prompt, so both pairs that show the cleared image also show the confirmed
    # one: they stay out until that one is cleared too.
    assert Pair.objects.filter(withdrawn=True).count() == 2
    engineer.post(f"/api/v1/image-flags/{keep['id']}/review/", {"decision": "clear"}, format="json")
    assert not Pair.objects.filter(withdrawn=True).exists()
    assert engineer.get("/api/v1/image-flags/?state=weird").status_code == 400
    assert (
        engineer.post(f"/api/v1/image-flags/{keep['id']}/review/", {"decision": "maybe"}, format="json").status_code
        == 400
    )


def test_a_new_report_after_a_clearance_withholds_the_image_again(world, users, django_user_model):
    annotator = users["annotator"]
    campaign = world["campaigns"][0]
    lease = handout.next_assignment(annotator=annotator, campaign=campaign)
    safety.image_report(reporter=annotator, assignment_id=lease.assignment, side="left", reason="unsafe")
    flag = ImageFlag.objects.get()
    safety.image_flag_review(flag_id=flag.pk, decision="clear", reviewer=users["engineer"])
    assert not Pair.objects.filter(withdrawn=True).exists()
    # The same annotator reporting it again is no new report: it stays cleared.
    assert (
        safety.image_report(reporter=annotator, assignment_id=lease.assignment, side="left", reason="unsafe").withheld
        == 0
    )
    assert not Pair.objects.filter(withdrawn=True).exists()

    other = make_user(django_user_model, "annotator", "other")
    campaign.annotators.add(other)
    pair = Pair.objects.filter(campaign=campaign).filter(image_a_id=flag.image_id) | Pair.objects.filter(
        campaign=campaign, image_b_id=flag.image_id
    )
    assignment = Assignment.objects.create(
        pair=pair.get(), annotator=other, a_on_left=True, expires_at=lease.expires_at
    )
    side = "left" if pair.get().image_a_id == flag.image_id else "right"
    outcome = safety.image_report(reporter=other, assignment_id=assignment.pk, side=side, reason="offensive")

    assert outcome.withheld == 1
    flag.refresh_from_db()
    assert flag.state == FlagState.WITHDRAWN
    assert Pair.objects.filter(withdrawn=True).count() == 2


def test_a_campaign_made_after_a_report_creates_the_pairs_of_withheld_images_withdrawn(world, users):
    annotator = users["annotator"]
    lease = handout.next_assignment(annotator=annotator, campaign=world["campaigns"][0])
    safety.image_report(reporter=annotator, assignment_id=lease.assignment, side="left", reason="unsafe")

    later = services.campaign_create(
        name="later",
        purpose="collect",
        prompt_set=world["prompt_set"],
        model_versions=[world["version"]],
        annotators=[annotator],
    )

    assert later.pairs.count() == 4
    assert later.pairs.filter(withdrawn=True).count() == 1


# --- Blocklists ------------------------------------------------------------------------------------------------


def test_blocklist_terms_match_whole_words_in_any_case():
    terms = normalise_terms(["  Red   Car ", "tree", "tree"])
    assert terms == ["red car", "tree"]
    assert blocked_term("A RED  car at night", terms) == "red car"
    assert blocked_term("a treehouse", terms) is None
    assert blocked_term("a tree.", terms) == "tree"
    assert blocked_prompts([(1, "a red car"), (2, "a redcar"), (3, "trees")], terms) == {1: "red car"}
    for bad in (["ok", 3], [""], ["x" * 101], [f"t{i}" for i in range(201)]):
        with pytest.raises(BlocklistError):
            normalise_terms(bad)


def test_a_campaign_blocklist_leaves_its_prompts_out_and_the_preview_counts_them(world, client_for, users):
    engineer = client_for("engineer")
    body = {
        "name": "blocked",
        "purpose": "collect",
        "prompt_set": world["prompt_set"].pk,
        "model_versions": [world["version"].pk],
        "annotators": ["annotator"],
        "blocked_terms": ["RED", "green tree"],
    }
    preview = engineer.post("/api/v1/campaigns/preview/", body, format="json")
    assert preview.status_code == 200, preview.content
    assert (preview.json()["prompts_blocked"], preview.json()["pairs_now"], preview.json()["images_wanted"]) == (
        2,
        2,
        4,
    )

    created = engineer.post("/api/v1/campaigns/", body, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["blocked_terms"] == ["red", "green tree"]
    campaign_id = created.json()["id"]
    prompts = set(Pair.objects.filter(campaign_id=campaign_id).values_list("image_a__prompt__text", flat=True))
    assert prompts == {"a blue house", "a dog"}

    everything = {**body, "name": "nothing", "blocked_terms": ["a"]}
    refused = engineer.post("/api/v1/campaigns/", everything, format="json")
    assert refused.status_code == 400
    assert "blocked_terms" in refused.json()
    assert (
        engineer.post("/api/v1/campaigns/", {**body, "name": "bad", "blocked_terms": [""]}, format="json").status_code
        == 400
    )
    screen = engineer.post("/api/v1/campaigns/", {**body, "name": "bad", "safety_screen": "nope"}, format="json")
    assert screen.status_code == 400
    assert "safety_screen" in screen.json()


# --- A campaign's safety screen ---------------------------------------------------------------------------------


def test_a_campaign_with_a_safety_screen_opens_with_the_flagged_images_withheld(
    users, settings, tmp_path, django_capture_on_commit_callbacks
):
    """The sandbox's ``sandbox_red`` screen flags the red circles: the campaign waits for its generation run (which
    screens every image, blocked prompts aside), then opens with every pair that shows a flagged image withdrawn,
    each flagged image reported by the screen."""
    from django.core.management import call_command

    from core.models import Run
    from core.run_execution import run_execute
    from generators.models import ImageScreening, PromptSet

    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    prompt_set = PromptSet.objects.get(name="sandbox-eval")
    campaign = services.campaign_create(
        name="screened",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
        blocked_terms=["triangle"],
        safety_screen="sandbox_red",
    )
    assert campaign.status == "preparing"
    run = Run.objects.get(pk=campaign.preparing_run_id)
    triangles = set(prompt_set.prompts.filter(text__contains="triangle").values_list("pk", flat=True))
    assert triangles and sorted(run.config["exclude_prompts"]) == sorted(triangles)
    assert run.config["safety_screen"] == "sandbox_red"

    with django_capture_on_commit_callbacks(execute=True):  # the run_finished event that opens the campaign
        assert run_execute(run_id=run.pk, worker="inline") == "succeeded"

    campaign.refresh_from_db()
    assert campaign.status == "open", campaign.status_note
    pairs = list(campaign.pairs.select_related("image_a__prompt", "image_b__prompt"))
    assert pairs and not {pair.image_a.prompt_id for pair in pairs} & triangles
    screened = ImageScreening.objects.filter(screen="sandbox_red")
    assert screened.count() == 2 * len(pairs)  # every image of the campaign, none of the blocked prompts
    flagged = set(screened.filter(flagged=True).values_list("image_id", flat=True))
    assert flagged, "the sandbox eval set's red circles are flagged (tests/generators/test_safety_screens.py)"
    for pair in pairs:
        shows_flagged = bool({pair.image_a_id, pair.image_b_id} & flagged)
        assert pair.withdrawn == shows_flagged, pair.image_a.prompt.text
        assert shows_flagged == ("red circle" in pair.image_a.prompt.text)
    reports = ImageReport.objects.filter(screen="sandbox_red")
    assert set(reports.values_list("flag__image_id", flat=True)) == flagged
    assert {report.reason for report in reports} == {"screen"}
    assert all(report.note.startswith("mostly red") for report in reports)
    # Nothing red is ever handed out.
    while (lease := handout.next_assignment(annotator=users["annotator"], campaign=campaign)) is not None:
        assert not {lease.image_a, lease.image_b} & flagged
        services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="tie")


def test_admins_see_reports_flags_and_screenings_but_cannot_edit_them_there(world, client, users):
    lease = handout.next_assignment(annotator=users["annotator"], campaign=world["campaigns"][0])
    safety.image_report(reporter=users["annotator"], assignment_id=lease.assignment, side="left", reason="unsafe")
    client.force_login(users["admin"])
    for path in ("/admin/feedback/imageflag/", "/admin/feedback/imagereport/", "/admin/generators/imagescreening/"):
        assert client.get(path).status_code == 200, path
    flag = ImageFlag.objects.get()
    assert client.post(f"/admin/feedback/imageflag/{flag.pk}/change/", {"state": "cleared"}).status_code == 403
    flag.refresh_from_db()
    assert flag.state == FlagState.WITHDRAWN


def test_an_arena_leaderboard_leaves_a_withdrawn_pairs_votes_out(users, settings, tmp_path):
    from feedback import selectors

    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    parent = ModelVersion.objects.get(base_model=base)
    child = generator_services.model_version_create(base_model=base, parent=parent, name="child")
    prompt_set = generator_services.prompt_set_create(name="p", split="eval", prompts=["one", "two"])
    for version, shade in ((parent, 10), (child, 100)):
        store_images(version, [(prompt, 0, tiny_png(shade + prompt.pk)) for prompt in prompt_set.prompts.all()])
    arena = services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=prompt_set,
        model_versions=[parent, child],
        annotators=[users["annotator"]],
        votes_per_pair=1,
    )
    while (lease := handout.next_assignment(annotator=users["annotator"], campaign=arena)) is not None:
        services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="left")
    assert len(selectors.arena_votes(arena)) == 2

    assignment = Assignment.objects.filter(pair__campaign=arena).first()
    safety.image_report(reporter=users["annotator"], assignment_id=assignment.pk, side="both", reason="offensive")

    assert len(selectors.arena_votes(arena)) == 1
    assert selectors.campaign_leaderboard(arena, n_resamples=10)["votes"]["used"] == 1

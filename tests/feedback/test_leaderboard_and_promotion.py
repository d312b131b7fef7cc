"""The arena leaderboard API and promoting a version (moving ``champion``) with its audit log."""

from __future__ import annotations

import io

import pytest

from feedback import handout, services
from feedback.leaderboard_serializers import LeaderboardSerializer
from generators import services as generator_services
from generators.models import AliasChange, GeneratedImage, ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images

pytestmark = pytest.mark.django_db


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 9, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def arena(users, settings, tmp_path, django_user_model):
    """Two versions on 12 prompts, one seed each: an arena campaign of 12 pairs, 3 votes wanted per pair."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    parent = ModelVersion.objects.get(base_model=base)
    child = ModelVersion.objects.create(base_model=base, name="tuned", parent=parent)
    prompt_set = generator_services.prompt_set_create(name="e", split="eval", prompts=[f"p {i}" for i in range(12)])
    for version, offset in ((parent, 0), (child, 100)):
        store_images(version, [(prompt, 0, _png(prompt.pk + offset)) for prompt in prompt_set.prompts.all()])
    annotators = [make_user(django_user_model, "annotator", f"a{i}") for i in range(3)]
    campaign = services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=prompt_set,
        model_versions=[parent, child],
        annotators=annotators,
        votes_per_pair=3,
    )
    return {"campaign": campaign, "parent": parent, "child": child, "annotators": annotators}


def _vote_all(arena, prefer_child_every: int) -> None:
    """Each annotator votes every pair: the child wins except on every ``prefer_child_every``-th vote."""
    count = 0
    for annotator in arena["annotators"]:
        while (lease := handout.next_assignment(annotator=annotator, campaign=arena["campaign"])) is not None:
            child_is_a = GeneratedImage.objects.get(pk=lease.image_a).model_version_id == arena["child"].pk
            child_on_left = child_is_a == lease.a_on_left
            count += 1
            child_wins = count % prefer_child_every != 0
            choice = "left" if child_on_left == child_wins else "right"
            services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted=choice)


def test_leaderboard_ranks_the_winner_with_intervals_and_a_verdict(arena, client_for):
    _vote_all(arena, prefer_child_every=6)  # the child wins 30 of 36 votes
    child, parent = arena["child"].pk, arena["parent"].pk

    board = client_for("reviewer").get(f"/api/v1/leaderboard/?campaign={arena['campaign'].pk}&resamples=200").json()

    assert [(m["model"], m["name"]) for m in board["models"]] == [(child, "tiny/tuned"), (parent, "tiny/base")]
    top = board["models"][0]
    assert top["rank"] == 1 and top["wins"] == 30 and top["losses"] == 6
    assert top["rating_interval"][0] < top["rating"] < top["rating_interval"][1]
    (pair,) = board["pairs"]
    assert (pair["model_a"], pair["model_b"]) == (child, parent)
    assert pair["win_rate_a"] == pytest.approx(30 / 36) and pair["p_interval"][0] > 0.5
    assert pair["verdict"] == "a_better" and pair["enough_votes"] is True and pair["winner"] == child
    assert pair["verdict_text"] == "tiny/tuned beats tiny/base"
    assert board["versions"] == [{"id": parent, "name": "tiny/base"}, {"id": child, "name": "tiny/tuned"}]
    assert board["matrix"]["models"] == [child, parent] and board["matrix"]["total"][0][1] == 36


def test_an_undecided_pair_says_so_in_typed_fields(arena, client_for):
    annotator = arena["annotators"][0]
    for _ in range(3):  # three ties: not enough to tell the versions apart
        lease = handout.next_assignment(annotator=annotator, campaign=arena["campaign"])
        services.vote_submit(annotator=annotator, assignment_id=lease.assignment, submitted="tie")

    (pair,) = client_for("engineer").get(f"/api/v1/leaderboard/?campaign={arena['campaign'].pk}").json()["pairs"]

    assert pair["verdict"] == "undecided" and pair["enough_votes"] is False and pair["winner"] is None
    assert pair["verdict_text"].startswith("not enough votes to tell") and pair["verdict_text"].endswith("(3 votes)")


def test_the_leaderboard_page_marks_the_champion_by_version_id(arena, users, client):
    _vote_all(arena, prefer_child_every=6)
    generator_services.model_alias_set(name="champion", version=arena["child"])
    client.force_login(users["reviewer"])

    page = client.get(f"/leaderboard/{arena['campaign'].pk}/").content.decode()

    assert 'data-verdict="a_better"' in page and "<strong>tiny/tuned beats tiny/base</strong>" in page
    assert f'<option value="{arena["child"].pk}">tiny/tuned</option>' in page
    assert 'tiny/tuned <span class="state state-open">champion</span>' in page


def test_leaderboard_of_a_campaign_without_votes_is_empty(arena, client_for):
    board = client_for("engineer").get(f"/api/v1/leaderboard/?campaign={arena['campaign'].pk}").json()
    assert board["models"] == [] and board["votes"]["used"] == 0
    assert {v["id"] for v in board["versions"]} == {arena["parent"].pk, arena["child"].pk}


@pytest.mark.parametrize("votes", [False, True])
def test_the_answer_has_the_documented_shape(arena, client_for, votes):
    if votes:
        _vote_all(arena, prefer_child_every=6)
    board = client_for("reviewer").get(f"/api/v1/leaderboard/?campaign={arena['campaign'].pk}&resamples=100").json()

    documented = LeaderboardSerializer(data=board)

    assert documented.is_valid(), documented.errors
    assert set(board) == set(LeaderboardSerializer().fields) - (set() if votes else {"settings"})
    fields = LeaderboardSerializer().fields
    assert all(set(row) == set(fields["models"].child.fields) for row in board["models"])
    assert all(set(pair) == set(fields["pairs"].child.fields) for pair in board["pairs"])


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "campaign"), ("campaign=x", "campaign"), ("both_bad=maybe&", "both_bad"), ("resamples=5&", "resamples")],
)
def test_bad_leaderboard_queries_are_400(arena, client_for, query, field):
    if query.endswith("&"):
        query += f"campaign={arena['campaign'].pk}"
    response = client_for("reviewer").get(f"/api/v1/leaderboard/?{query}")
    assert response.status_code == 400 and field in response.json()


def test_unknown_campaign_is_404_and_annotators_are_403(arena, client_for):
    assert client_for("reviewer").get("/api/v1/leaderboard/?campaign=999").status_code == 404
    assert client_for("annotator").get(f"/api/v1/leaderboard/?campaign={arena['campaign'].pk}").status_code == 403


def test_promotion_moves_the_alias_and_logs_who_when_and_why(arena, client_for, users):
    generator_services.model_alias_set(name="champion", version=arena["parent"])
    reviewer = client_for("reviewer")

    moved = reviewer.post(
        "/api/v1/aliases/",
        {"name": "champion", "version": arena["child"].pk, "reason": "wins the arena 30-6"},
        format="json",
    )

    assert moved.status_code == 200, moved.json()
    body = moved.json()
    assert body["version"] == arena["child"].pk and body["version_name"] == "tiny/tuned"
    latest = body["history"][0]
    assert latest["changed_by"] == "reviewer" and latest["reason"] == "wins the arena 30-6"
    assert latest["previous_version"] == arena["parent"].pk
    again = reviewer.post(
        "/api/v1/aliases/", {"name": "champion", "version": arena["child"].pk, "reason": "again"}, format="json"
    )
    assert again.status_code == 200 and AliasChange.objects.filter(alias="champion").count() == 2  # no-op not logged


def test_promotion_needs_a_reason_and_the_right_role(arena, client_for):
    body = {"name": "champion", "version": arena["child"].pk}
    assert "reason" in client_for("engineer").post("/api/v1/aliases/", body, format="json").json()
    body["reason"] = "better"
    assert client_for("annotator").post("/api/v1/aliases/", body, format="json").status_code == 403
    assert client_for("engineer").post("/api/v1/aliases/", {**body, "version": 999}, format="json").status_code == 400

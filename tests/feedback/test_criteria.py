"""Multi-criteria campaigns: questions validated on create, one vote row per question, idempotent and conflicting
resubmits, skips for every question, k counted once per submission, quality and leaderboard per criterion, and the
Pick-a-Pic export/import round trip with the criterion column."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feedback import criteria, selectors, services
from feedback.exports import pickapic_rows
from feedback.models import Assignment, Campaign, Pair, Vote
from feedback.pickapic import PICKAPIC_SCHEMA, read_parquet, write_parquet
from generators import services as generator_services
from generators.models import ModelVersion
from tests.feedback.test_simulation import PROMPTS as SIM_PROMPTS
from tests.feedback.test_simulation import K as SIM_K
from tests.feedback.test_simulation import _simulate, shapes_campaign  # noqa: F401 - a fixture
from tests.support.images import store_images

pytestmark = pytest.mark.django_db

QUESTIONS = [
    {"key": "prompt", "text": "Which image matches the prompt?"},
    {"key": "looks", "text": "Which image looks better?"},
    {"key": "plausible", "text": "Which image is plausible, without artefacts?"},
]


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 40, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def _make_campaign(users, name: str, questions=None, k: int = 2, purpose: str = "collect"):
    base = generator_services.base_model_register(name=f"tiny-{name}", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(
        name=f"p-{name}", split="train", prompts=[f"{name} prompt {i}" for i in range(3)]
    )
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, _png(prompt.pk * 10 + seed)) for seed in (0, 1)])
    return services.campaign_create(
        name=name,
        purpose=purpose,
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=[users["annotator"]],
        votes_per_pair=k,
        questions=questions,
    )


@pytest.fixture
def campaign(users, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return _make_campaign(users, "three", QUESTIONS)


def _next(client, campaign) -> dict:
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/next/")
    assert response.status_code == 200, response.content
    return response.json()


def _post(client, body: dict):
    return client.post("/api/v1/votes/", body, format="json")


def _image_choice(pressed: str, a_on_left: bool) -> str:
    if pressed in ("left", "right"):
        return "a" if (pressed == "left") == a_on_left else "b"
    return pressed


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("questions", "says"),
    [
        ([], "between 1 and 4"),
        ([{"key": f"q{i}", "text": "?"} for i in range(5)], "between 1 and 4"),
        ([{"key": "a", "text": "x"}, {"key": "a", "text": "y"}], "asked twice"),
        ([{"key": "Not A Slug", "text": "x"}], "not a slug"),
        ([{"key": "k" * 33, "text": "x"}], "at most 32"),
        ([{"key": "a", "text": "  "}], "non-empty"),
        ([{"key": "a", "text": "x" * 201}], "at most 200"),
        ([{"key": "a", "text": "x", "colour": "red"}], "unknown field"),
        ("looks", "list"),
        ([["a", "x"]], "an object"),
    ],
)
def test_questions_are_validated_on_create_with_the_field_named(engineer_client, campaign, questions, says):
    version = campaign.model_versions.get()
    response = engineer_client.post(
        "/api/v1/campaigns/",
        {
            "name": "bad",
            "purpose": "collect",
            "prompt_set": campaign.prompt_set_id,
            "model_versions": [version.pk],
            "questions": questions,
        },
        format="json",
    )
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["questions"]
    assert says.lower() in " ".join(response.json()["questions"]).lower()


def test_a_campaign_without_questions_asks_the_default_one_and_shows_its_questions(
    users, settings, tmp_path, client_for
):
    settings.MEDIA_ROOT = tmp_path
    plain = _make_campaign(users, "plain")
    assert plain.questions == [{"key": "overall", "text": criteria.DEFAULT_QUESTION_TEXT}]
    three = _make_campaign(users, "three", QUESTIONS)
    listed = {c["name"]: c for c in client_for("annotator").get("/api/v1/campaigns/").json()}
    assert listed["three"]["questions"] == QUESTIONS
    assert listed["plain"]["questions"] == plain.questions
    assert three.questions == QUESTIONS


def test_questions_text_is_stripped_and_created_through_the_api(engineer_client, campaign):
    version = campaign.model_versions.get()
    response = engineer_client.post(
        "/api/v1/campaigns/",
        {
            "name": "two",
            "purpose": "collect",
            "prompt_set": campaign.prompt_set_id,
            "model_versions": [version.pk],
            "questions": [{"key": "prompt", "text": "  Matches?  "}, {"key": "looks-good", "text": "Looks?"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["questions"] == [
        {"key": "prompt", "text": "Matches?"},
        {"key": "looks-good", "text": "Looks?"},
    ]


# ---------------------------------------------------------------------------------------------------- votes


def test_one_submission_stores_one_vote_per_question_counted_once(campaign, client_for):
    annotator = client_for("annotator")
    body = _next(annotator, campaign)
    answers = {"prompt": "left", "looks": "right", "plausible": "both_bad"}

    created = _post(annotator, {"assignment": body["assignment"], "answers": answers, "seconds": 2.0})

    assert created.status_code == 201, created.content
    assert created.json()["answers"] == answers and created.json()["choice"] == "left"
    a_on_left = Assignment.objects.get(pk=body["assignment"]).a_on_left
    stored = {v.criterion: v for v in Vote.objects.filter(assignment_id=body["assignment"])}
    assert set(stored) == {"prompt", "looks", "plausible"}
    for key, pressed in answers.items():
        assert stored[key].submitted == pressed
        assert stored[key].choice == _image_choice(pressed, a_on_left)
        assert stored[key].seconds == 2.0
    assert Pair.objects.get(pk=body["pair"]).valid_votes == 1  # k counts submissions, not questions
    assert Assignment.objects.get(pk=body["assignment"]).status == "voted"


def test_resubmits_are_idempotent_and_different_answers_conflict(campaign, client_for):
    annotator = client_for("annotator")
    body = _next(annotator, campaign)
    answers = {"prompt": "tie", "looks": "left", "plausible": "right"}

    first = _post(annotator, {"assignment": body["assignment"], "answers": answers})
    again = _post(annotator, {"assignment": body["assignment"], "answers": dict(reversed(answers.items()))})
    changed = _post(annotator, {"assignment": body["assignment"], "answers": {**answers, "plausible": "left"}})
    skipped = _post(annotator, {"assignment": body["assignment"], "choice": "skip"})

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["answers"] == answers
    assert changed.status_code == 409 and skipped.status_code == 409
    assert Vote.objects.count() == 3
    assert Pair.objects.get(pk=body["pair"]).valid_votes == 1


def test_a_skip_skips_the_pair_for_every_question_and_does_not_count(campaign, client_for):
    annotator = client_for("annotator")
    body = _next(annotator, campaign)

    response = _post(annotator, {"assignment": body["assignment"], "choice": "skip"})

    assert response.status_code == 201
    assert response.json()["answers"] == dict.fromkeys(("prompt", "looks", "plausible"), "skip")
    assert sorted(Vote.objects.values_list("criterion", "choice")) == [
        ("looks", "skip"),
        ("plausible", "skip"),
        ("prompt", "skip"),
    ]
    assert Pair.objects.get(pk=body["pair"]).valid_votes == 0
    assert _next(annotator, campaign)["pair"] != body["pair"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"choice": "left"}, "answers"),  # one choice cannot answer three questions
        ({"answers": {"prompt": "left", "looks": "left"}}, "answers"),  # one missing
        ({"answers": {"prompt": "left", "looks": "left", "plausible": "left", "colour": "left"}}, "answers"),
        ({"answers": {"prompt": "skip", "looks": "left", "plausible": "left"}}, "answers"),  # skip is for the pair
        ({"answers": {}}, "answers"),
        ({"choice": "left", "answers": {"prompt": "left"}}, "choice"),
        ({}, "choice"),
    ],
)
def test_bad_answers_are_400_naming_the_field_and_store_nothing(campaign, client_for, payload, field):
    annotator = client_for("annotator")
    body = _next(annotator, campaign)
    response = _post(annotator, {"assignment": body["assignment"], **payload})
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Vote.objects.exists() and Pair.objects.get(pk=body["pair"]).valid_votes == 0


def test_a_one_question_campaign_takes_choice_or_answers(users, settings, tmp_path, client_for):
    settings.MEDIA_ROOT = tmp_path
    plain = _make_campaign(users, "plain")
    annotator = client_for("annotator")
    first, second = _next(annotator, plain), None
    assert _post(annotator, {"assignment": first["assignment"], "choice": "right"}).status_code == 201
    second = _next(annotator, plain)
    response = _post(annotator, {"assignment": second["assignment"], "answers": {"overall": "left"}})
    assert response.status_code == 201 and response.json()["answers"] == {"overall": "left"}
    assert list(Vote.objects.values_list("criterion", flat=True)) == ["overall", "overall"]
    assert _post(annotator, {"assignment": second["assignment"], "choice": "left"}).status_code == 200


def test_the_service_returns_the_first_questions_vote_and_all_of_them(campaign, users):
    lease = services_lease(campaign, users["annotator"])
    answers = {"plausible": "tie", "prompt": "right", "looks": "left"}
    votes, created = services.vote_submit_answers(
        annotator=users["annotator"], assignment_id=lease.assignment, answers=answers
    )
    vote, again = services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, answers=answers)
    assert created and not again
    assert [v.criterion for v in votes] == ["prompt", "looks", "plausible"]  # the campaign's order
    assert vote.criterion == "prompt" and vote.pk == votes[0].pk


def services_lease(campaign, user):
    from feedback import handout

    return handout.next_assignment(annotator=user, campaign=campaign)


def test_progress_counts_pairs_not_rows(campaign, client_for):
    annotator = client_for("annotator")
    for pressed in ("left", "right"):
        body = _next(annotator, campaign)
        answers = dict.fromkeys(("prompt", "looks", "plausible"), pressed)
        assert _post(annotator, {"assignment": body["assignment"], "answers": answers}).status_code == 201
    progress = annotator.get("/api/v1/campaigns/").json()[0]["progress"]
    assert progress["my_votes"] == 2 and progress["valid_votes"] == 2
    assert selectors.campaign_progress(campaign, campaign.annotators.get())["my_votes"] == 2
    points = selectors.votes_over_time(campaign)
    assert points[-1]["votes"] == 2 and points[-1]["valid_votes"] == 2


# -------------------------------------------------------------------------------- quality, leaderboard, export


def test_quality_reads_one_criterion_and_names_a_bad_one(campaign, client_for, users):
    annotator = client_for("annotator")
    for _ in range(3):
        body = _next(annotator, campaign)
        answers = {"prompt": "left", "looks": "tie", "plausible": "both_bad"}
        _post(annotator, {"assignment": body["assignment"], "answers": answers})
    engineer = client_for("engineer")
    first = engineer.get(f"/api/v1/campaigns/{campaign.pk}/quality/").json()
    looks = engineer.get(f"/api/v1/campaigns/{campaign.pk}/quality/?criterion=looks").json()
    bad = engineer.get(f"/api/v1/campaigns/{campaign.pk}/quality/?criterion=colour")
    assert first["criterion"] == "prompt" and first["votes"] == 3
    assert looks["criterion"] == "looks" and looks["votes"] == 3
    assert {r["choice"] for r in selectors.vote_records(campaign, "looks")} == {"tie"}
    assert bad.status_code == 400 and "criterion" in bad.json()


def test_the_arena_leaderboard_ranks_on_the_chosen_question(users, settings, tmp_path, client_for):
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="arena", source="org/arena")
    parent = ModelVersion.objects.get(base_model=base)
    child = generator_services.model_version_create(base_model=base, name="child", parent=parent)
    prompt_set = generator_services.prompt_set_create(name="pa", split="eval", prompts=["a", "b", "c"])
    for prompt in prompt_set.prompts.all():
        for version in (parent, child):
            store_images(version, [(prompt, 0, _png(prompt.pk * 7 + version.pk))])
    arena = services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=prompt_set,
        model_versions=[parent, child],
        annotators=[users["annotator"]],
        votes_per_pair=1,
        questions=QUESTIONS[:2],
    )
    annotator = client_for("annotator")
    for _ in range(3):
        body = _next(annotator, arena)
        pair = Pair.objects.get(pk=body["pair"])
        a_on_left = Assignment.objects.get(pk=body["assignment"]).a_on_left
        child_side = "left" if (pair.image_a.model_version_id == child.pk) == a_on_left else "right"
        parent_side = "right" if child_side == "left" else "left"
        answers = {"prompt": child_side, "looks": parent_side}  # the child matches prompts, the parent looks better
        assert _post(annotator, {"assignment": body["assignment"], "answers": answers}).status_code == 201
    engineer = client_for("engineer")
    by_prompt = engineer.get(f"/api/v1/leaderboard/?campaign={arena.pk}").json()
    by_looks = engineer.get(f"/api/v1/leaderboard/?campaign={arena.pk}&criterion=looks").json()
    assert by_prompt["criterion"] == "prompt" and by_looks["criterion"] == "looks"
    assert by_prompt["models"][0]["model"] == child.pk
    assert by_looks["models"][0]["model"] == parent.pk
    assert engineer.get(f"/api/v1/leaderboard/?campaign={arena.pk}&criterion=nope").status_code == 400


def test_export_carries_the_criterion_and_import_round_trips_it(campaign, client_for, tmp_path):
    annotator = client_for("annotator")
    expected = []
    for answers in (
        {"prompt": "left", "looks": "right", "plausible": "tie"},
        {"prompt": "right", "looks": "both_bad", "plausible": "left"},
    ):
        body = _next(annotator, campaign)
        assert _post(annotator, {"assignment": body["assignment"], "answers": answers}).status_code == 201
        a_on_left = Assignment.objects.get(pk=body["assignment"]).a_on_left
        expected += [(key, _image_choice(pressed, a_on_left)) for key, pressed in answers.items()]
    body = _next(annotator, campaign)
    _post(annotator, {"assignment": body["assignment"], "choice": "skip"})  # skips are not exported

    rows, _ = pickapic_rows([campaign], include_flagged=True)
    only_looks, _ = pickapic_rows([campaign], include_flagged=True, criterion="looks")
    path = tmp_path / "votes.parquet"
    write_parquet(rows, path)
    back = read_parquet(path)

    assert sorted((r.criterion, r.choice) for r in back) == sorted(expected)
    assert pq.read_schema(path).field("criterion").type == pa.string()
    assert {r.criterion for r in only_looks} == {"looks"} and len(only_looks) == 2


def test_files_without_a_criterion_column_read_as_the_default_and_bad_ones_are_named(tmp_path):
    png = _png(1)
    table = pa.table({"caption": ["a cat"], "jpg_0": [png], "jpg_1": [_png(2)], "label_0": [1.0], "label_1": [0.0]})
    pq.write_table(table, tmp_path / "plain.parquet")
    assert [r.criterion for r in read_parquet(tmp_path / "plain.parquet")] == [criteria.DEFAULT_CRITERION]

    columns = {name: [None] for name in PICKAPIC_SCHEMA.names}
    columns |= {"caption": ["a"], "jpg_0": [png], "jpg_1": [_png(2)], "label_0": [0.0], "label_1": [1.0]}
    pq.write_table(
        pa.table({**columns, "criterion": ["Not a slug!"]}, schema=PICKAPIC_SCHEMA), tmp_path / "bad.parquet"
    )
    with pytest.raises(ValueError, match="row 0: criterion 'Not a slug!'"):
        read_parquet(tmp_path / "bad.parquet")
    pq.write_table(pa.table(columns, schema=PICKAPIC_SCHEMA), tmp_path / "null.parquet")
    assert [r.criterion for r in read_parquet(tmp_path / "null.parquet")] == ["overall"]


# ------------------------------------------------------------------------------------- simulated annotators


@pytest.mark.django_db(transaction=True)
def test_simulated_annotators_answer_every_question_of_a_campaign(live_server, shapes_campaign):  # noqa: F811
    campaign, large = shapes_campaign
    Campaign.objects.filter(pk=campaign.pk).update(questions=QUESTIONS[:2])

    summary = _simulate(live_server, campaign, "--noise", "0")

    assert summary["votes"] == SIM_PROMPTS * SIM_K and summary["errors"] == 0
    votes = list(Vote.objects.select_related("pair"))
    assert len(votes) == 2 * SIM_PROMPTS * SIM_K
    assert sorted({v.criterion for v in votes}) == ["looks", "prompt"]
    for vote in votes:  # the one judgement of the larger shape, for every question
        assert vote.choice == ("a" if vote.pair.image_a_id in large else "b")
    assert {p.valid_votes for p in Pair.objects.filter(campaign=campaign)} == {SIM_K}

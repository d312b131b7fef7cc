"""Raters see a pair's images under opaque per-assignment tokens: no image ids, nothing that orders the versions."""

from __future__ import annotations

import re

import pytest

from feedback import services
from feedback.models import Assignment, Pair
from generators import services as generator_services
from generators.models import GeneratedImage, ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images, tiny_png

pytestmark = pytest.mark.django_db

RATING_IMAGE_URL = re.compile(r"/api/v1/rating-images/(?P<token>[A-Za-z0-9_-]{22})/(?P<side>left|right)/")


@pytest.fixture
def arena(users, settings, tmp_path, django_user_model):
    """A base version and its child on 10 prompts: 10 arena pairs. The base's images were generated first, so
    each pair's lower image id is the base's (what unblinded arenas when URLs carried image ids)."""
    settings.MEDIA_ROOT = tmp_path
    base_model = generator_services.base_model_register(name="tiny", source="org/tiny")
    base = ModelVersion.objects.get(base_model=base_model)
    child = ModelVersion.objects.create(base_model=base_model, name="tuned", parent=base)
    prompt_set = generator_services.prompt_set_create(name="e", split="eval", prompts=[f"p {i}" for i in range(10)])
    for version, offset in ((base, 0), (child, 100)):
        store_images(version, [(prompt, 0, tiny_png(prompt.pk + offset)) for prompt in prompt_set.prompts.all()])
    other = make_user(django_user_model, "annotator", "other")
    campaign = services.campaign_create(
        name="arena",
        purpose="arena",
        prompt_set=prompt_set,
        model_versions=[base, child],
        annotators=[users["annotator"], other, users["reviewer"]],
        votes_per_pair=3,
    )
    return {"campaign": campaign, "base": base, "child": child, "other": other}


def _next(client, campaign):
    return client.get(f"/api/v1/campaigns/{campaign.pk}/next/")


def _shown_version(body: dict, side: str) -> int:
    """The version whose image the server shows on ``side`` (from the database: the response does not say)."""
    assignment = Assignment.objects.select_related("pair").get(pk=body["assignment"])
    a_shown = assignment.a_on_left == (side == "left")
    image = assignment.pair.image_a_id if a_shown else assignment.pair.image_b_id
    return GeneratedImage.objects.get(pk=image).model_version_id


def test_arena_image_urls_carry_no_image_ids_and_serve_the_side_shown(arena, client_for):
    annotator = client_for("annotator")
    bodies = []
    while (response := _next(annotator, arena["campaign"])).status_code == 200:
        body = response.json()
        bodies.append(body)
        annotator.post("/api/v1/votes/", {"assignment": body["assignment"], "choice": "tie"}, format="json")
    assert len(bodies) == 10
    image_ids = {str(pk) for pk in GeneratedImage.objects.values_list("pk", flat=True)}

    tokens = set()
    for body in bodies:
        pair = Pair.objects.get(pk=body["pair"])
        assert pair.image_a_id < pair.image_b_id  # ids follow generation order: the base's image is a
        for side in ("left", "right"):
            assert set(body[side]) == {"url"}  # no image id beside the URL either
            match = RATING_IMAGE_URL.fullmatch(body[side]["url"])
            assert match is not None and match["side"] == side, body[side]["url"]
            assert not image_ids & set(body[side]["url"].split("/"))
            served = annotator.get(body[side]["url"])
            shown = pair.image_a if _shown_version(body, side) == arena["base"].pk else pair.image_b
            assert served.status_code == 200 and served["Content-Type"] == "image/png"
            assert b"".join(served.streaming_content) == shown.file.open("rb").read()
        tokens.add(RATING_IMAGE_URL.fullmatch(body["left"]["url"])["token"])
    assert len(tokens) == 10  # one token per assignment, drawn at random (not derived from ids)


def test_the_url_order_does_not_follow_the_versions(arena, client_for):
    """Which version a URL shows is decided by the assignment's random side, never by ids: the left URL sorts
    first, and the base version is on the left in some pairs and on the right in others."""
    other = client_for("annotator")
    other.force_authenticate(arena["other"])
    base_on_left = []
    for rater in (client_for("annotator"), other):
        for _ in range(10):
            body = _next(rater, arena["campaign"]).json()
            assert sorted([body["left"]["url"], body["right"]["url"]]) == [body["left"]["url"], body["right"]["url"]]
            base_on_left.append(_shown_version(body, "left") == arena["base"].pk)
            vote = rater.post("/api/v1/votes/", {"assignment": body["assignment"], "choice": "tie"}, format="json")
            assert vote.status_code == 201, vote.content
    # Sides are drawn per assignment with p=1/2: all 20 on one side has probability 2/2**20.
    assert 0 < sum(base_on_left) < 20, base_on_left


def test_someone_elses_token_and_an_unknown_token_are_the_same_404(arena, client_for):
    mine = _next(client_for("annotator"), arena["campaign"]).json()["left"]["url"]
    other = client_for("annotator")
    other.force_authenticate(arena["other"])
    assert _next(other, arena["campaign"]).status_code == 200  # a rater of the same campaign, with a pair of their own

    not_yours = other.get(mine)
    unknown = other.get("/api/v1/rating-images/AAAAAAAAAAAAAAAAAAAAAA/left/")
    assert not_yours.status_code == unknown.status_code == 404
    assert not_yours.json() == unknown.json()
    assert client_for("annotator").get(mine.replace("/left/", "/top/")).json() == unknown.json()
    for odd in ("%00" + "A" * 21, "A" * 5000, "%C3%A9" * 11):  # never a database error: the same 404
        assert client_for("annotator").get(f"/api/v1/rating-images/{odd}/left/").json() == unknown.json()
    assert client_for("reviewer").get(mine).status_code == 404  # a reviewer rating the same arena: not theirs
    assert client_for("admin").get(mine).status_code == 404
    assert client_for("engineer").get(mine).status_code == 403  # engineers do not rate
    assert client_for(None).get(mine).status_code == 401
    assert client_for("annotator").get(mine).status_code == 200


def test_raters_cannot_fetch_images_by_id(arena, client_for):
    """Annotators fetch images only by token: by id they could compare bytes and learn which id is on which side."""
    annotator = client_for("annotator")
    body = _next(annotator, arena["campaign"]).json()
    pair = Pair.objects.get(pk=body["pair"])
    in_my_pair = annotator.get(f"/api/v1/images/{pair.image_a_id}/file/")
    missing = annotator.get("/api/v1/images/999999/file/")
    assert in_my_pair.status_code == missing.status_code == 403
    assert in_my_pair.json() == missing.json()
    assert client_for("reviewer").get(f"/api/v1/images/{pair.image_a_id}/file/").status_code == 200


def test_an_image_whose_file_is_gone_is_a_404_in_one_query(arena, client_for, django_assert_num_queries):
    annotator = client_for("annotator")
    body = _next(annotator, arena["campaign"]).json()
    with django_assert_num_queries(2):  # the assignment's image, then just the image's file name
        assert annotator.get(body["left"]["url"]).status_code == 200
    assignment = Assignment.objects.select_related("pair__image_a", "pair__image_b").get(pk=body["assignment"])
    for image in (assignment.pair.image_a, assignment.pair.image_b):
        image.file.storage.delete(image.file.name)
    assert annotator.get(body["left"]["url"]).status_code == 404
    assert client_for("reviewer").get(f"/api/v1/images/{assignment.pair.image_a_id}/file/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_existing_assignment_its_own_token(arena, users):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    pair = arena["campaign"].pairs.first()
    before, after = [("feedback", "0002_campaign_preparation")], [("feedback", "0003_assignment_image_token")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    OldAssignment = old_apps.get_model("feedback", "Assignment")
    for user in (users["annotator"], users["reviewer"], arena["other"]):
        OldAssignment.objects.create(pair_id=pair.pk, annotator_id=user.pk, a_on_left=True, expires_at=timezone.now())

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    tokens = list(Assignment.objects.values_list("image_token", flat=True))
    assert len(tokens) == 3 and len(set(tokens)) == 3 and all(len(t) == 22 for t in tokens)

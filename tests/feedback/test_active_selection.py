"""Active pair selection in campaigns: the settings, their validation, and the hand-out in priority order."""

from __future__ import annotations

import io

import pytest
from django.utils import timezone

from feedback import handout, services
from feedback.models import Pair
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images

pytestmark = pytest.mark.django_db


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 30, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def prompts_and_version(settings, tmp_path):
    """6 prompts with two seeds of one version each (6 pairs)."""
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(name="p", split="train", prompts=[f"p{i}" for i in range(6)])
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, _png(prompt.pk * 10 + seed)) for seed in (0, 1)])
    return prompt_set, version


def _campaign(prompts_and_version, annotators, *, selection: str, name: str = "c", k: int = 2):
    prompt_set, version = prompts_and_version
    return services.campaign_create(
        name=name,
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=annotators,
        votes_per_pair=k,
        selection=selection,
        refit_every=50,
    )


def test_a_campaign_is_created_with_its_selection_and_refit_period_and_shows_them(
    prompts_and_version, engineer_client, users
):
    prompt_set, version = prompts_and_version
    body = {
        "name": "active",
        "purpose": "collect",
        "prompt_set": prompt_set.pk,
        "model_versions": [version.pk],
        "selection": "uncertainty",
        "refit_every": 40,
    }
    response = engineer_client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["selection"] == "uncertainty" and response.json()["refit_every"] == 40
    listed = {c["name"]: c for c in engineer_client.get("/api/v1/campaigns/").json()}
    assert listed["active"]["selection"] == "uncertainty" and listed["active"]["refit_every"] == 40

    body.pop("selection"), body.pop("refit_every")
    response = engineer_client.post("/api/v1/campaigns/", {**body, "name": "defaults"}, format="json")
    assert response.json()["selection"] == "random" and response.json()["refit_every"] == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [("selection", "smartest"), ("selection", 3), ("refit_every", 0), ("refit_every", 9), ("refit_every", 10**6)],
)
def test_bad_selection_settings_are_400_naming_the_field(prompts_and_version, engineer_client, field, value):
    prompt_set, version = prompts_and_version
    body = {"name": "x", "purpose": "collect", "prompt_set": prompt_set.pk, "model_versions": [version.pk]}
    response = engineer_client.post("/api/v1/campaigns/", {**body, field: value}, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()


def test_the_service_refuses_bad_settings_too(prompts_and_version, users):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="refit_every"):
        services.campaign_create(
            name="s",
            purpose="collect",
            prompt_set=prompts_and_version[0],
            model_versions=[prompts_and_version[1]],
            refit_every=3,
        )
    with pytest.raises(ValidationError, match="selection"):
        services.campaign_create(
            name="s",
            purpose="collect",
            prompt_set=prompts_and_version[0],
            model_versions=[prompts_and_version[1]],
            selection="mine",
        )


def _priorities(campaign, values: list[float]) -> list[int]:
    """Give the campaign's pairs (in id order) these priorities; returns the pair ids from highest priority down."""
    ids = list(campaign.pairs.order_by("id").values_list("id", flat=True))
    assert services.pair_priorities_set(campaign_id=campaign.pk, priorities=dict(zip(ids, values, strict=True))) == 6
    return [pk for _, pk in sorted(zip(values, ids, strict=True), key=lambda item: (-item[0], item[1]))]


def test_an_uncertainty_campaign_hands_out_the_highest_priority_fresh_pair_first(
    prompts_and_version, users, django_user_model
):
    second = make_user(django_user_model, "annotator", "second")
    campaign = _campaign(prompts_and_version, [users["annotator"], second], selection="uncertainty")
    order = _priorities(campaign, [0.1, 0.7, 0.3, 0.9, 0.5, 0.9])  # a tie between the 4th and 6th: id order

    first = handout.next_assignment(annotator=users["annotator"], campaign=campaign)
    assert first.pair == order[0]
    services.vote_submit(annotator=users["annotator"], assignment_id=first.assignment, submitted="left")
    # The started pair is finished first (by someone who has not seen it), then the next priority.
    assert handout.next_assignment(annotator=second, campaign=campaign).pair == order[0]
    seen = [handout.next_assignment(annotator=users["annotator"], campaign=campaign, after=first.assignment)]
    assert seen[0].pair == order[1]
    for lease in seen:
        services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="right")
    rest = []
    while (lease := handout.next_assignment(annotator=users["annotator"], campaign=campaign)) is not None:
        rest.append(lease.pair)
        services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="tie")
    assert rest == order[2:]  # a lone annotator's started pairs wait for others: fresh pairs by priority


def test_new_priorities_reorder_the_pairs_still_fresh(prompts_and_version, users):
    campaign = _campaign(prompts_and_version, [users["annotator"]], selection="uncertainty")
    _priorities(campaign, [0.0] * 6)
    ids = list(campaign.pairs.order_by("id").values_list("id", flat=True))
    first = handout.next_assignment(annotator=users["annotator"], campaign=campaign)
    assert first.pair == ids[0]
    services.pair_priorities_set(campaign_id=campaign.pk, priorities={ids[4]: 2.0, ids[2]: 1.0})
    assert handout.next_assignment(annotator=users["annotator"], campaign=campaign).pair == ids[0]  # still held
    lease = handout.next_assignment(annotator=users["annotator"], campaign=campaign, after=first.assignment)
    assert lease.pair == ids[4]


def test_a_random_campaign_ignores_priorities(prompts_and_version, users):
    campaign = _campaign(prompts_and_version, [users["annotator"]], selection="random")
    _priorities(campaign, [0.1, 0.7, 0.3, 0.9, 0.5, 0.2])
    got = []
    while (lease := handout.next_assignment(annotator=users["annotator"], campaign=campaign)) is not None:
        got.append(lease.pair)
        services.vote_submit(annotator=users["annotator"], assignment_id=lease.assignment, submitted="left")
    assert got == list(campaign.pairs.order_by("id").values_list("id", flat=True))


def test_priorities_of_another_campaigns_pairs_and_non_finite_values_are_refused(prompts_and_version, users):
    from django.core.exceptions import ValidationError

    one = _campaign(prompts_and_version, [users["annotator"]], selection="uncertainty", name="one")
    other = _campaign(prompts_and_version, [users["annotator"]], selection="uncertainty", name="other")
    theirs = other.pairs.values_list("id", flat=True).first()
    assert services.pair_priorities_set(campaign_id=one.pk, priorities={theirs: 5.0}) == 0
    assert Pair.objects.get(pk=theirs).priority == 0.0
    with pytest.raises(ValidationError, match="finite"):
        services.pair_priorities_set(campaign_id=one.pk, priorities={one.pairs.first().pk: float("nan")})


def test_the_uncertainty_fresh_band_walks_the_partial_priority_index(prompts_and_version, users):
    """PostgreSQL: the fresh-pair search of an uncertainty campaign reads only pairs without votes, in priority
    order, through ``pair_fresh_priority`` (started pairs are not in it, however many there are)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL planner check")
    from generators.models import GeneratedImage

    campaign = _campaign(prompts_and_version, [users["annotator"]], selection="uncertainty")
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
        Pair(campaign=campaign, image_a=a, image_b=b, priority=(a.pk * 7919 + b.pk) % 1000 / 1000)
        for a in images
        for b in images
        if a.pk != b.pk
    )  # 3,540 more pairs, their priorities scattered
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE feedback_pair")  # every pair fresh
        started = list(campaign.pairs.order_by("-priority").values_list("id", flat=True))[:-40]
        Pair.objects.filter(pk__in=started).update(valid_votes=1)  # the top of the priorities is started
        band, order = handout._BANDS["uncertainty"][1]
        sql = handout._REGULAR_CANDIDATE_SQL.format(band=band, order=order, not_tried="")
        params = {"campaign": campaign.pk, "annotator": users["annotator"].pk, "k": 2, "gold": False}
        cursor.execute("EXPLAIN " + sql, {**params, "now": timezone.now()})
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "pair_fresh_priority" in plan, plan

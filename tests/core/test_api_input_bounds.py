"""Out-of-range input answers 4xx naming what to fix, never 500: page sizes, 64-bit ids, run settings."""

from __future__ import annotations

import dataclasses

import pytest

from core import run_kinds
from core.ids import MAX_ID
from finetune.config import INT_RANGES, ConfigError, DDPOConfig

pytestmark = pytest.mark.django_db

HUGE = 2**70
LIST_ENDPOINTS = [
    "/api/v1/users/",
    "/api/v1/runs/",
    "/api/v1/base-models/",
    "/api/v1/model-versions/",
    "/api/v1/prompt-sets/",
    "/api/v1/images/",
    "/api/v1/datasets/",
    "/api/v1/reward-models/",
]


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"limit={HUGE}", "limit"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        (f"offset={HUGE}", "offset"),
        ("offset=1.5", "offset"),
    ],
)
def test_bad_limit_or_offset_is_400_naming_it(engineer_client, path, query, field):
    response = engineer_client.get(f"{path}?{query}")

    assert response.status_code == 400, response.content[:300]
    assert field in response.json()


def test_a_page_holds_at_most_500_rows(engineer_client, django_user_model):
    django_user_model.objects.bulk_create(django_user_model(username=f"u{i}") for i in range(520))

    page = engineer_client.get("/api/v1/users/?limit=1000000").json()

    assert page["count"] >= 520
    assert len(page["results"]) == 500
    assert "limit=500" in page["next"]


def test_the_largest_offset_is_an_empty_page(engineer_client):
    page = engineer_client.get(f"/api/v1/runs/?offset={MAX_ID}").json()

    assert page["results"] == []


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/runs/{HUGE}/",
        f"/api/v1/campaigns/{HUGE}/next/",
        f"/api/v1/campaigns/{HUGE}/quality/",
        f"/api/v1/prompt-sets/{HUGE}/",
        f"/api/v1/datasets/{MAX_ID + 1}/",
        f"/runs/{HUGE}/",
        f"/leaderboard/{HUGE}/",
    ],
)
def test_ids_beyond_64_bits_in_the_path_are_404(client_for, path):
    assert client_for("admin").get(path).status_code == 404


def test_a_vote_for_an_assignment_beyond_64_bits_is_400(client_for):
    response = client_for("annotator").post("/api/v1/votes/", {"assignment": HUGE, "choice": "a"}, format="json")

    assert response.status_code == 400
    assert "assignment" in response.json()


@pytest.fixture
def collect_campaign(users):
    from feedback import services as feedback_services
    from generators import services as generator_services
    from generators.models import ModelVersion

    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    prompt_set = generator_services.prompt_set_create(name="few", split="eval", prompts=["a red circle"])
    return feedback_services.campaign_create(
        name="collect",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[ModelVersion.objects.get(base_model=base)],
        annotators=[users["annotator"]],
        open_now=False,
    )


def test_the_leaderboard_of_a_collect_campaign_is_400_naming_campaign(client_for, collect_campaign):
    response = client_for("reviewer").get(f"/api/v1/leaderboard/?campaign={collect_campaign.pk}")

    assert response.status_code == 400
    assert "arena" in response.json()["campaign"][0]


def test_the_leaderboard_page_of_a_collect_campaign_is_404(client, users, collect_campaign):
    client.force_login(users["reviewer"])

    assert client.get(f"/leaderboard/{collect_campaign.pk}/").status_code == 404


def test_leaderboard_campaign_beyond_64_bits_is_400(client_for):
    response = client_for("reviewer").get(f"/api/v1/leaderboard/?campaign={HUGE}")

    assert response.status_code == 400
    assert "campaign" in response.json()


@pytest.mark.parametrize("source", ["0" * 500, "/" + "a" * 300, "org/" + "n" * 400])
def test_a_base_model_source_longer_than_a_file_name_is_400(engineer_client, source):
    response = engineer_client.post("/api/v1/base-models/", {"name": "long", "source": source}, format="json")

    assert response.status_code == 400, response.content[:300]
    assert "source" in response.json()


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("generate", {"model_versions": [HUGE], "prompt_set": 1}, "model_versions"),
        ("generate", {"model_versions": [1], "prompt_set": HUGE}, "prompt_set"),
        ("reward_train", {"campaigns": [HUGE]}, "campaigns"),
        ("reward_train", {"dataset": HUGE}, "dataset"),
        ("evaluate", {"reward_model": HUGE, "model_versions": [1], "prompt_set": 1}, "reward_model"),
        ("finetune", {"model_version": HUGE, "oracle": "area", "train_prompt_set": 1, "eval_prompt_set": 1}, None),
        ("diagnostic", {"fail_at_step": HUGE}, "fail_at_step"),
    ],
)
def test_ids_and_counts_beyond_range_in_run_configs_are_400(engineer_client, kind, config, field):
    response = engineer_client.post("/api/v1/runs/", {"kind": kind, "config": config}, format="json")

    assert response.status_code == 400, response.content[:300]
    errors = response.json()["config"]
    assert (field or "model_version") in errors


@pytest.mark.parametrize("field", sorted(f.name for f in dataclasses.fields(DDPOConfig) if f.type in ("int", "float")))
def test_every_numeric_ddpo_setting_is_bounded(field):
    with pytest.raises(ConfigError) as raised:
        DDPOConfig.from_dict({field: 10**12})

    assert raised.value.field_name == field


def test_every_integer_ddpo_setting_has_a_range():
    integers = {f.name for f in dataclasses.fields(DDPOConfig) if f.type == "int"}
    assert integers == set(INT_RANGES)


def _numeric_fields(serializer) -> list[tuple[str, object]]:
    from rest_framework import serializers

    found = []
    for name, field in serializer.fields.items():
        if isinstance(field, serializers.ListField):
            field = field.child
        if isinstance(field, serializers.Serializer):
            found += [(f"{name}.{sub}", f) for sub, f in _numeric_fields(field)]
        elif isinstance(field, serializers.IntegerField | serializers.FloatField):
            found.append((name, field))
    return found


@pytest.mark.parametrize("kind", [k.name for k in run_kinds.available()])
def test_every_numeric_run_setting_has_a_maximum(kind):
    serializer = run_kinds.get(kind).config_serializer()

    unbounded = [name for name, field in _numeric_fields(serializer) if field.max_value is None]

    assert unbounded == []


@pytest.mark.parametrize("targets", [["to_q\x00"], ["to_q"] * 65, ["to q"], [3]])
def test_lora_targets_are_a_bounded_list_of_module_names(targets):
    with pytest.raises(ConfigError) as raised:
        DDPOConfig.from_dict({"lora_targets": targets})

    assert raised.value.field_name == "lora_targets"


@pytest.mark.parametrize("odd", ["²", "١٢", f" {HUGE} "])
def test_a_campaign_naming_an_odd_id_string_is_400_not_500(client_for, odd):
    """'²'.isdigit() is true but int('²') raises: such an id was a 500 in the bounded related field."""
    response = client_for("engineer").post(
        "/api/v1/campaigns/",
        {"name": "odd", "purpose": "collect", "prompt_set": odd, "model_versions": [odd]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "prompt_set" in response.json()

"""Run config forms: serializers described as field specs (core/form_schema.py), their dataclass extras, id choices,
presets, and what GET /api/v1/run-kinds/ answers each role."""

from __future__ import annotations

import dataclasses
import io

import pytest
from django.core.management import call_command
from rest_framework import serializers

from core import form_schema, run_kinds, run_presets
from core.form_schema import FIELD_TYPES, IdSource
from core.ids import IdField
from core.permissions import REVIEWER_RUN_KINDS
from core.validation import StrictSerializer


def _by_name(specs: list[dict]) -> dict[str, dict]:
    return {spec["name"]: spec for spec in specs}


def _form(kind: str) -> dict[str, dict]:
    return _by_name(form_schema.describe_serializer(run_kinds.get(kind).config_serializer))


# --- Declared fields -----------------------------------------------------------------------------------------------


class Entry(StrictSerializer):
    reward_model = IdField(help_text="which")
    weight = serializers.FloatField(min_value=0.0, max_value=10.0)


class Toy(StrictSerializer):
    count = serializers.IntegerField(min_value=1, max_value=9, default=3, help_text="how many")
    rate = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    flag = serializers.BooleanField(default=False)
    mode = serializers.ChoiceField(choices=["a", "b"], default="b")
    label = serializers.CharField(max_length=20, required=False, label="Nice name")
    when = serializers.IntegerField(required=False, allow_null=True, default=None)
    backbone = serializers.CharField(default=lambda: "computed")
    model_versions = serializers.ListField(child=IdField(), min_length=1, max_length=4)
    mix = serializers.ListField(child=Entry(), required=False)
    inner = Entry(required=False)
    blob = serializers.JSONField(required=False)
    read_only = serializers.CharField(read_only=True)


def test_declared_fields_become_specs_in_order_with_types_ranges_defaults_and_help():
    specs = form_schema.describe_serializer(Toy)
    assert [s["name"] for s in specs] == [
        "count", "rate", "flag", "mode", "label", "when", "backbone", "model_versions", "mix", "inner", "blob",
    ]  # fmt: skip
    assert {s["type"] for s in specs} <= set(FIELD_TYPES)
    by = _by_name(specs)
    assert by["count"] == {
        "name": "count",
        "label": "Count",
        "type": "integer",
        "required": False,
        "nullable": False,
        "help_text": "how many",
        "group": None,
        "min": 1,
        "max": 9,
        "default": 3,
    }
    rate = by["rate"]
    assert (rate["type"], rate["min"], rate["max"], "default" in rate) == ("number", 0, 1, False)
    assert (by["flag"]["type"], by["flag"]["default"]) == ("boolean", False)
    assert by["mode"]["choices"] == [{"value": "a", "label": "a"}, {"value": "b", "label": "b"}]
    assert (by["label"]["label"], by["label"]["max_length"]) == ("Nice name", 20)
    assert (by["when"]["nullable"], by["when"]["default"]) == (True, None)
    assert by["backbone"]["default"] == "computed"  # a callable default is shown as its value
    assert by["model_versions"]["required"] is True
    assert (by["model_versions"]["min_length"], by["model_versions"]["max_length"]) == (1, 4)
    assert by["model_versions"]["item"]["type"] == "id"
    assert (by["blob"]["type"], "children" in by["blob"]) == ("object", False)  # any JSON object


def test_nested_serializers_and_lists_of_them_describe_their_children():
    by = _by_name(form_schema.describe_serializer(Toy))
    item = by["mix"]["item"]
    assert (by["mix"]["type"], item["type"]) == ("list", "object")
    assert [(c["name"], c["type"], c["required"]) for c in item["children"]] == [
        ("reward_model", "id", True),
        ("weight", "number", True),
    ]
    assert [c["name"] for c in by["inner"]["children"]] == ["reward_model", "weight"]
    assert (by["inner"]["type"], by["inner"]["required"]) == ("object", False)


def test_id_fields_name_their_model_by_registered_field_name(users):
    by = _form("generate")
    assert by["prompt_set"]["type"] == "id" and by["prompt_set"]["model"] == "generators.PromptSet"
    assert by["model_versions"]["item"]["model"] == "generators.ModelVersion"
    mix = _form("finetune")["reward_models"]["item"]["children"][0]
    assert (mix["name"], mix["type"], mix["model"]) == ("reward_model", "id", "rewards.RewardModel")
    assert _form("selection_refit")["campaign"]["model"] == "feedback.Campaign"
    assert _form("dataset_import")["dataset"]["model"] == "rewards.PreferenceDataset"


def test_related_fields_with_many_are_lists_and_slug_fields_offer_their_querysets_slugs(users):
    from django.contrib.auth import get_user_model

    from generators.models import ModelVersion

    class Many(StrictSerializer):
        versions = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), many=True, default=list)
        people = serializers.SlugRelatedField(
            slug_field="username", many=True, queryset=get_user_model().objects.filter(username__startswith="a")
        )

    by = _by_name(form_schema.describe_serializer(Many))
    assert (by["versions"]["type"], by["versions"]["default"]) == ("list", [])
    assert (by["versions"]["item"]["type"], by["versions"]["item"]["model"]) == ("id", "generators.ModelVersion")
    assert by["people"]["type"] == "list" and by["people"]["required"]
    assert by["people"]["item"]["type"] == "choice"
    assert [c["value"] for c in by["people"]["item"]["choices"]] == ["admin", "annotator"]  # in slug order


# --- Extra fields --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 10  # how many steps
    rate: float = 0.5
    ratio: float | None = dataclasses.field(default=None, metadata={"help": "from metadata"})
    kind: str = "x"
    targets: tuple[str, ...] = ("q", "k")
    on: bool = True


def test_dataclass_fields_take_type_default_range_choices_help_and_group():
    specs = form_schema.dataclass_field_specs(
        Settings,
        group="Advanced",
        main=("kind",),
        exclude=("on",),
        int_ranges={"steps": (1, 100)},
        choices={"kind": ("x", "y")},
        overrides={"rate": {"min": 0.0, "max_exclusive": True}},
    )
    by = _by_name(specs)
    assert list(by) == ["steps", "rate", "ratio", "kind", "targets"]
    assert by["steps"] == {
        "name": "steps",
        "label": "Steps",
        "type": "integer",
        "required": False,
        "nullable": False,
        "help_text": "how many steps",  # the source comment
        "group": "Advanced",
        "default": 10,
        "min": 1,
        "max": 100,
    }
    assert (by["rate"]["type"], by["rate"]["min"], by["rate"]["max_exclusive"]) == ("number", 0.0, True)
    assert (by["ratio"]["type"], by["ratio"]["nullable"], by["ratio"]["help_text"]) == ("number", True, "from metadata")
    assert (by["kind"]["type"], by["kind"]["group"], by["kind"]["choices"][1]["value"]) == ("choice", None, "y")
    assert (by["targets"]["type"], by["targets"]["item"]["type"], by["targets"]["default"]) == (
        "list",
        "string",
        ["q", "k"],
    )


class Hooked(StrictSerializer):
    steps = serializers.JSONField(required=False)
    name = serializers.CharField(required=False)

    @classmethod
    def form_extra_fields(cls):
        return form_schema.dataclass_field_specs(Settings, group="Trainer")


class Registered(StrictSerializer):
    name = serializers.CharField(required=False)


def test_extra_fields_come_from_the_serializer_hook_or_the_registry_and_replace_declared_ones():
    hooked = form_schema.describe_serializer(Hooked)
    assert [s["name"] for s in hooked] == ["steps", "name", "rate", "ratio", "kind", "targets", "on"]
    assert hooked[0]["type"] == "integer" and hooked[0]["group"] == "Trainer"  # the typed setting, in its place

    assert [s["name"] for s in form_schema.describe_serializer(Registered)] == ["name"]
    form_schema.register_extra_fields(Registered, lambda: [form_schema._spec("extra", None, "boolean")])
    try:
        assert [s["name"] for s in form_schema.describe_serializer(Registered)] == ["name", "extra"]
    finally:
        form_schema._EXTRA_FIELDS.pop(Registered)


def test_finetune_form_has_every_ddpo_setting_with_the_dataclass_default_and_int_range():
    from finetune.config import ALGORITHMS, INT_RANGES, DDPOConfig
    from finetune.run_configs import DDPO_FIELDS, PLATFORM_FIELDS

    by = _form("finetune")
    assert set(by) == set(PLATFORM_FIELDS) | DDPO_FIELDS  # whatever the serializer accepts is in the form
    defaults = DDPOConfig().to_dict()
    for name in DDPO_FIELDS:
        assert by[name]["default"] == defaults[name], name
        assert by[name]["required"] is False
    for name, (low, high) in INT_RANGES.items():
        assert (by[name]["type"], by[name]["min"], by[name]["max"]) == ("integer", low, high)
    assert by["learning_rate"]["type"] == "number" and by["ema_decay"]["default"] == 0.0
    assert [c["value"] for c in by["algorithm"]["choices"]] == list(ALGORITHMS)
    assert by["algorithm"]["group"] is None  # DDPO or Flow-GRPO: chosen up front
    assert by["epochs"]["group"] and by["lora_targets"]["type"] == "list"
    assert by["oracle"]["type"] == "choice" and "area" in [c["value"] for c in by["oracle"]["choices"]]
    assert by["model_version"]["required"] and not by["reward_model"]["required"]


def test_preference_tune_form_has_every_trainer_setting():
    from finetune.preference_config import INT_RANGES, PreferenceTuneConfig
    from finetune.run_configs import PREFERENCE_FIELDS, PREFERENCE_PLATFORM_FIELDS

    by = _form("preference_tune")
    assert set(by) == set(PREFERENCE_PLATFORM_FIELDS) | PREFERENCE_FIELDS
    defaults = PreferenceTuneConfig().to_dict()
    assert all(by[name]["default"] == defaults[name] for name in PREFERENCE_FIELDS)
    assert all((by[n]["min"], by[n]["max"]) == r for n, r in INT_RANGES.items())
    assert [c["value"] for c in by["algorithm"]["choices"]] == ["diffusion_dpo", "diffusion_kto"]
    assert by["gradient_checkpointing"]["type"] == "boolean"


def test_reward_train_settings_are_typed_from_their_rules():
    from rewards.config import HEADS, RewardTrainConfig
    from rewards.run_configs import TRAINING_FIELDS

    by = _form("reward_train")
    assert set(TRAINING_FIELDS) <= set(by) and set(run_kinds.get("reward_train").config_serializer().fields) == set(by)
    lr = {"type": "number", "min": 0.0, "max": 1.0, "min_exclusive": True, "max_exclusive": True}
    assert lr.items() <= by["lr"].items()
    assert (by["max_steps"]["type"], by["max_steps"]["nullable"], by["max_steps"]["default"]) == ("integer", True, 200)
    assert [c["value"] for c in by["head"]["choices"]] == list(HEADS)
    assert by["head"]["default"] == RewardTrainConfig().head and by["head"]["group"] is None
    assert by["backbone"]["type"] == "string" and by["backbone"]["group"] is None  # the declared field stays


def test_every_kind_describes_every_declared_field():
    for kind in run_kinds.available():
        names = {spec["name"] for spec in form_schema.describe_serializer(kind.config_serializer)}
        assert set(kind.config_serializer().fields) <= names, kind.name


# --- Id choices ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_id_choices_offer_existing_rows_newest_first_up_to_the_limit(users):
    from generators import services

    for name in ("a", "b", "c"):
        services.prompt_set_create(name=name, split="eval", prompts=["a red circle"])
    generate = form_schema.with_id_choices(
        form_schema.describe_serializer(run_kinds.get("generate").config_serializer), users["engineer"], limit=2
    )
    choices = _by_name(generate)["prompt_set"]["choices"]
    assert [c["label"].split(" ")[0] for c in choices] == ["c", "b"]
    assert all(c["label"].endswith(f"(#{c['value']})") for c in choices)


@pytest.mark.django_db
def test_id_sources_are_asked_once_per_model_with_the_user(users):
    calls = []

    def rows(user, limit):
        calls.append((user.username, limit))
        return [(7, "seven")]

    class Two(StrictSerializer):
        thing = IdField()
        things = serializers.ListField(child=IdField())

    form_schema.register_id_source(("thing", "things"), IdSource("tests.Thing", rows))
    try:
        specs = form_schema.with_id_choices(form_schema.describe_serializer(Two), users["reviewer"])
    finally:
        form_schema._ID_SOURCES.pop("thing"), form_schema._ID_SOURCES.pop("things")
    assert specs[0]["choices"] == [{"value": 7, "label": "seven (#7)"}]
    assert specs[1]["item"]["choices"] == specs[0]["choices"]
    assert calls == [("reviewer", form_schema.ID_CHOICES_LIMIT)]


# --- Presets and the run-kinds listing ----------------------------------------------------------------------------


@pytest.fixture
def sandbox(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())


def test_quick_sandbox_presets_are_valid_configs_on_the_sandbox(sandbox):
    for kind in ("generate", "finetune"):
        (quick,) = [p for p in run_presets.presets_for(kind) if p["name"] == "quick sandbox"]
        validated = run_kinds.get(kind).validate_config(quick["config"])
        assert all(validated[key] == value for key, value in quick["config"].items()), kind


@pytest.mark.django_db
def test_published_presets_are_valid_trainer_settings():
    from finetune.config import DDPOConfig
    from finetune.preference_config import PreferenceTuneConfig
    from rewards.config import RewardTrainConfig

    presets = {(kind, p["name"]): p["config"] for kind in ("finetune", "preference_tune", "reward_train")
               for p in run_presets.presets_for(kind)}  # fmt: skip
    DDPOConfig.from_dict(presets[("finetune", "SD 1.5 LoRA")])
    PreferenceTuneConfig.from_dict(presets[("preference_tune", "SD 1.5 LoRA")])
    pickscore = presets[("reward_train", "PickScore (CLIP-H)")]
    assert pickscore["head"] == "none" and pickscore["lr"] == 3e-6
    RewardTrainConfig.from_dict(pickscore)


def test_a_preset_leaves_out_rows_this_installation_lacks(db):
    (quick,) = [p for p in run_presets.presets_for("generate") if p["name"] == "quick sandbox"]
    assert "model_versions" not in quick["config"] and "prompt_set" not in quick["config"]
    assert quick["config"]["images_per_prompt"] == 1


def test_run_kinds_answer_forms_to_all_and_can_start_only_for_kinds_the_caller_may_start(client_for, sandbox):
    engineer = {k["name"]: k for k in client_for("engineer").get("/api/v1/run-kinds/").json()}
    reviewer = {k["name"]: k for k in client_for("reviewer").get("/api/v1/run-kinds/").json()}

    assert set(engineer) == set(reviewer) == {k.name for k in run_kinds.available()}
    assert all(k["can_start"] for k in engineer.values())
    assert {name for name, k in reviewer.items() if k["can_start"]} == REVIEWER_RUN_KINDS
    for name, kind in reviewer.items():
        assert [s["name"] for s in kind["form"]] == [s["name"] for s in engineer[name]["form"]]
        prompt_set = _by_name(kind["form"]).get("prompt_set")
        if name in REVIEWER_RUN_KINDS:  # choices and presets only where the caller may start the kind
            assert {c["label"].split(" ")[0] for c in prompt_set["choices"]} == {"sandbox-train", "sandbox-eval"}
            assert [p["name"] for p in kind["presets"]] == ["quick sandbox"]
        else:
            assert kind["presets"] == [] and all("choices" not in s for s in kind["form"] if s["type"] == "id")
    versions = _by_name(engineer["finetune"]["form"])["model_version"]["choices"]
    assert [c["label"].split(" ")[0] for c in versions] == ["sandbox-flow/base", "sandbox/base"]
    assert [p["name"] for p in engineer["finetune"]["presets"]] == ["quick sandbox", "SD 1.5 LoRA"]

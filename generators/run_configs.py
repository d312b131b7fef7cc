"""The config schema of ``generate`` runs (validated in the web process, before anything is queued)."""

from __future__ import annotations

from rest_framework import serializers

from core import form_schema
from core.ids import IdField
from core.validation import StrictSerializer
from generators.models import ModelVersion, PromptSet, PromptSetItem
from generators.pipeline import DTYPES, MAX_SIDE, SCHEDULERS, SamplerSettings
from generators.pipeline_classes import scheduler_problem
from generators.safety_screens import ScreenError, check_screen_name, screen_names

MAX_IMAGES_PER_RUN = 100_000


def _multiple_of_8(value: int) -> None:
    if value % 8:
        raise serializers.ValidationError(f"Must be a multiple of 8 (the VAE's downsampling), not {value}.")


def check_model_version_ids(ids: list[int]) -> list[int]:
    """Model version ids of a run config: each once, each existing (a ValidationError names what is wrong)."""
    if len(set(ids)) != len(ids):
        raise serializers.ValidationError("Each model version may be listed once.")
    missing = sorted(set(ids) - set(ModelVersion.objects.filter(pk__in=ids).values_list("pk", flat=True)))
    if missing:
        raise serializers.ValidationError(f"Unknown model version(s): {missing}.")
    return ids


def check_schedulers_fit(version_ids: list[int], scheduler: str | None) -> None:
    """A 400 on ``scheduler`` when it (or, when None, a base model's default) cannot sample one of the versions'
    base models (a DDIM sampler on a flow-matching model, or the reverse)."""
    versions = ModelVersion.objects.filter(pk__in=version_ids).select_related("base_model")
    for version in versions:
        base = version.base_model
        wanted = scheduler or base.default_settings.get("scheduler") or SamplerSettings.scheduler
        problem = scheduler_problem(base.pipeline_class, wanted)
        if problem:
            raise serializers.ValidationError({"scheduler": [f"{version}: {problem}."]})


class SamplerSettingsSerializer(StrictSerializer):
    """Sampler settings asked for (``generators.sampler_settings.SettingsRequest``); absent: each version's default."""

    scheduler = serializers.ChoiceField(choices=sorted(SCHEDULERS), required=False)
    steps = serializers.IntegerField(min_value=1, max_value=500, required=False)
    guidance_scale = serializers.FloatField(min_value=0.0, max_value=50.0, required=False)
    width = serializers.IntegerField(min_value=8, max_value=MAX_SIDE, required=False, validators=[_multiple_of_8])
    height = serializers.IntegerField(min_value=8, max_value=MAX_SIDE, required=False, validators=[_multiple_of_8])
    negative_prompt = serializers.CharField(max_length=1000, allow_blank=True, required=False)
    eta = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    dtype = serializers.ChoiceField(
        choices=DTYPES, default="auto", help_text="auto: fp16 on CUDA, fp32 on the CPU (the worker's device)"
    )


class GenerateConfigSerializer(SamplerSettingsSerializer):
    model_versions = serializers.ListField(child=IdField(), min_length=1, max_length=16)
    prompt_set = IdField()
    images_per_prompt = serializers.IntegerField(min_value=1, max_value=256, default=1)
    seed = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, default=0, help_text="first seed; then +1 per image"
    )
    batch_size = serializers.IntegerField(min_value=1, max_value=256, default=8)
    device = serializers.RegexField(r"^(auto|cpu|cuda(:\d+)?)$", default="auto", max_length=16)
    safety_screen = serializers.CharField(
        max_length=100,
        allow_blank=True,
        default="",
        help_text="a registered safety screen that checks every image of the run after generation (empty: none)",
    )
    exclude_prompts = serializers.ListField(
        child=IdField(),
        default=list,
        max_length=MAX_IMAGES_PER_RUN,
        help_text="ids of prompts of the set to leave out (neither generated nor screened)",
    )

    @classmethod
    def form_extra_fields(cls) -> list[dict]:
        """``safety_screen`` as a choice of the screens registered now (unset: none)."""
        spec = form_schema.describe_field("safety_screen", cls().fields["safety_screen"])
        spec.pop("default", None)  # the form's empty option is the server default: no screen
        spec.update(type="choice", choices=[{"value": name, "label": name} for name in screen_names()])
        return [spec]

    def validate_safety_screen(self, name: str) -> str:
        if not name:
            return ""
        try:
            return check_screen_name(name)
        except ScreenError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_model_versions(self, ids: list[int]) -> list[int]:
        return check_model_version_ids(ids)

    def validate_prompt_set(self, set_id: int) -> int:
        prompt_set = PromptSet.objects.filter(pk=set_id).first()
        if prompt_set is None:
            raise serializers.ValidationError(f"Unknown prompt set {set_id}.")
        if not PromptSetItem.objects.filter(prompt_set=prompt_set).exists():
            raise serializers.ValidationError(f"Prompt set {prompt_set.name!r} is empty: add prompts first.")
        return set_id

    def validate(self, attrs: dict) -> dict:
        check_schedulers_fit(attrs["model_versions"], attrs.get("scheduler"))
        prompts = _kept_prompt_count(attrs["prompt_set"], attrs.get("exclude_prompts") or [])
        total = len(attrs["model_versions"]) * prompts * attrs["images_per_prompt"]
        if total > MAX_IMAGES_PER_RUN:
            raise serializers.ValidationError(
                {"images_per_prompt": [f"This run would make {total} images; at most {MAX_IMAGES_PER_RUN} per run."]}
            )
        return attrs


def _kept_prompt_count(set_id: int, excluded: list[int]) -> int:
    """How many prompts of the set a run keeps; a 400 on ``exclude_prompts`` for ids listed twice, ids that are
    not prompts of the set, or a list that leaves none."""
    in_set = set(PromptSetItem.objects.filter(prompt_set_id=set_id).values_list("prompt_id", flat=True))
    if len(set(excluded)) != len(excluded):
        raise serializers.ValidationError({"exclude_prompts": ["Each prompt may be listed once."]})
    strangers = sorted(set(excluded) - in_set)
    if strangers:
        name = PromptSet.objects.get(pk=set_id).name
        raise serializers.ValidationError(
            {"exclude_prompts": [f"Not prompts of the prompt set {name!r}: {strangers[:20]}."]}
        )
    kept = len(in_set) - len(excluded)
    if kept == 0:
        raise serializers.ValidationError(
            {"exclude_prompts": ["This leaves no prompt to generate: exclude fewer prompts."]}
        )
    return kept

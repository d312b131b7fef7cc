"""Config schemas of ``finetune`` (DDPO) and ``preference_tune`` (Diffusion-DPO / KTO) runs.

A ``finetune`` run says what to tune, against which reward, on which prompts, and the DDPO settings.

The DDPO hyper-parameters are the fields of :class:`finetune.config.DDPOConfig` given at the top level of the
config; they are checked by that class (it imports no torch), so a bad range names its field here too.
"""

from __future__ import annotations

import dataclasses
import math

from rest_framework import serializers

from core.ids import IdField
from core.validation import StrictSerializer
from finetune.config import ConfigError, DDPOConfig
from finetune.oracles import OracleError, check_oracle_name
from finetune.preference_config import PreferenceTuneConfig
from generators.models import ModelVersion, PromptSet, Split
from rewards.models import RewardModel
from rewards.run_configs import (
    EXCLUDE_ANNOTATORS_HELP,
    campaigns_criterion,
    check_annotator_ids,
    check_campaign_ids,
    check_exclusion_source,
    check_training_dataset,
)

DDPO_FIELDS = {field.name for field in dataclasses.fields(DDPOConfig)}
PLATFORM_FIELDS = (
    "model_version",
    "reward_model",
    "reward_models",
    "oracle",
    "gold_oracle",
    "train_prompt_set",
    "eval_prompt_set",
    "name",
    "device",
)


MIX_WEIGHT_RANGE = (0.0, 10.0)
MAX_MIXED_REWARDS = 4


def _prompt_set_of_split(pk: int, split: str) -> int:
    """A known, non-empty prompt set of ``split``, or a 400 saying which of these it is not."""
    prompt_set = PromptSet.objects.filter(pk=pk).first()
    if prompt_set is None:
        raise serializers.ValidationError(f"Unknown prompt set {pk}.")
    if prompt_set.split != split:
        raise serializers.ValidationError(f"Prompt set {prompt_set.name!r} is {prompt_set.split}, not {split}.")
    if not prompt_set.prompts.exists():
        raise serializers.ValidationError(f"Prompt set {prompt_set.name!r} is empty.")
    return pk


class RewardMixEntrySerializer(StrictSerializer):
    """One reward model of a mix and its weight (its scores are standardised first: see
    ``finetune.reward.WeightedRewardMix``)."""

    reward_model = IdField(help_text="reward model id")
    weight = serializers.FloatField(
        min_value=MIX_WEIGHT_RANGE[0], max_value=MIX_WEIGHT_RANGE[1], help_text="its weight, in (0, 10]"
    )

    def validate_weight(self, weight: float) -> float:
        if not math.isfinite(weight) or weight <= MIX_WEIGHT_RANGE[0]:
            raise serializers.ValidationError(f"A finite weight in ({MIX_WEIGHT_RANGE[0]:g}, {MIX_WEIGHT_RANGE[1]:g}].")
        return weight


class FinetuneConfigSerializer(serializers.Serializer):
    model_version = IdField(help_text="the version to fine-tune (the parent)")
    reward_model = IdField(required=False, help_text="reward model id")
    reward_models = serializers.ListField(
        child=RewardMixEntrySerializer(),
        min_length=1,
        max_length=MAX_MIXED_REWARDS,
        required=False,
        help_text="or a weighted mix of 1-4 reward models (e.g. one per criterion): [{reward_model, weight}]; the "
        "reward is the weighted sum of their scores, each standardised by its statistics on the first scored batch",
    )
    oracle = serializers.CharField(
        max_length=300, required=False, help_text="or a registered oracle's name (sandbox: area, colour, shape)"
    )
    gold_oracle = serializers.CharField(
        max_length=300, required=False, help_text="a registered oracle also measured on the eval prompts (hacking)"
    )
    train_prompt_set = IdField()
    eval_prompt_set = IdField()
    name = serializers.CharField(max_length=200, required=False, help_text="new version name (default ddpo-<run>)")
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"config": ["A JSON object."]})
        unknown = sorted(set(data) - set(PLATFORM_FIELDS) - DDPO_FIELDS)
        if unknown:
            known = ", ".join(sorted({*PLATFORM_FIELDS, *DDPO_FIELDS}))
            raise serializers.ValidationError({key: [f"Unknown field. Known fields: {known}."] for key in unknown})
        platform = super().to_internal_value({k: v for k, v in data.items() if k in PLATFORM_FIELDS})
        try:
            ddpo = DDPOConfig.from_dict({k: v for k, v in data.items() if k in DDPO_FIELDS})
        except ConfigError as exc:
            raise serializers.ValidationError({exc.field_name: [str(exc)]}) from exc
        return {**platform, **ddpo.to_dict()}

    def validate_model_version(self, pk: int) -> int:
        if not ModelVersion.objects.filter(pk=pk).exists():
            raise serializers.ValidationError(f"Unknown model version {pk}.")
        return pk

    def validate_reward_model(self, pk: int) -> int:
        if not RewardModel.objects.filter(pk=pk).exists():
            raise serializers.ValidationError(f"Unknown reward model {pk}.")
        return pk

    def validate_reward_models(self, entries: list[dict]) -> list[dict]:
        ids = [entry["reward_model"] for entry in entries]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("Each reward model at most once.")
        missing = sorted(set(ids) - set(RewardModel.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if missing:
            raise serializers.ValidationError(f"Unknown reward model(s) {missing}.")
        return entries

    def _oracle(self, name: str) -> str:
        try:
            return check_oracle_name(name)
        except OracleError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_oracle(self, name: str) -> str:
        return self._oracle(name)

    def validate_gold_oracle(self, name: str) -> str:
        return self._oracle(name)

    def validate_name(self, name: str) -> str:
        return name.strip()

    def validate_train_prompt_set(self, pk: int) -> int:
        return _prompt_set_of_split(pk, Split.TRAIN)

    def validate_eval_prompt_set(self, pk: int) -> int:
        return _prompt_set_of_split(pk, Split.EVAL)

    def validate(self, attrs: dict) -> dict:
        if sum(key in attrs for key in ("reward_model", "reward_models", "oracle")) != 1:
            raise serializers.ValidationError(
                {"reward_model": ["Give one of reward_model, reward_models (a weighted mix) or oracle."]}
            )
        if "name" in attrs:
            base = ModelVersion.objects.get(pk=attrs["model_version"]).base_model
            if base.versions.filter(name=attrs["name"]).exists():
                raise serializers.ValidationError({"name": [f"{base.name} already has a version {attrs['name']!r}."]})
        return attrs


PREFERENCE_FIELDS = {field.name for field in dataclasses.fields(PreferenceTuneConfig)}
PREFERENCE_PLATFORM_FIELDS = (
    "model_version",
    "dataset",
    "campaigns",
    "criterion",
    "include_flagged",
    "gold_threshold",
    "min_gold",
    "exclude_annotators",
    "eval_prompt_set",
    "gold_oracle",
    "name",
    "device",
)


class PreferenceTuneConfigSerializer(serializers.Serializer):
    """Diffusion-DPO or Diffusion-KTO on a model version, straight from votes: a dataset, or campaigns snapshotted
    when the run starts (as ``reward_train`` does). The trainer's settings are the fields of
    :class:`finetune.preference_config.PreferenceTuneConfig` at the top level, checked by that class."""

    model_version = IdField(help_text="the version to fine-tune (the parent)")
    dataset = IdField(required=False, help_text="a ready preference dataset of one question's votes")
    campaigns = serializers.ListField(child=IdField(), required=False, max_length=100, help_text="or campaigns")
    criterion = serializers.CharField(
        max_length=100, required=False, help_text="with campaigns: learn the votes on this question"
    )
    include_flagged = serializers.BooleanField(default=False)
    gold_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.7)
    min_gold = serializers.IntegerField(min_value=1, max_value=10_000, default=5)
    exclude_annotators = serializers.ListField(
        child=IdField(), required=False, max_length=1000, help_text=EXCLUDE_ANNOTATORS_HELP
    )
    eval_prompt_set = IdField(help_text="eval prompts sampled before, during and after training")
    gold_oracle = serializers.CharField(
        max_length=300, required=False, help_text="a registered oracle measured on the eval images"
    )
    name = serializers.CharField(max_length=200, required=False, help_text="new version name (default dpo-<run>)")
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"config": ["A JSON object."]})
        unknown = sorted(set(data) - set(PREFERENCE_PLATFORM_FIELDS) - PREFERENCE_FIELDS)
        if unknown:
            known = ", ".join(sorted({*PREFERENCE_PLATFORM_FIELDS, *PREFERENCE_FIELDS}))
            raise serializers.ValidationError({key: [f"Unknown field. Known fields: {known}."] for key in unknown})
        platform = super().to_internal_value({k: v for k, v in data.items() if k in PREFERENCE_PLATFORM_FIELDS})
        try:
            trainer = PreferenceTuneConfig.from_dict({k: v for k, v in data.items() if k in PREFERENCE_FIELDS})
        except ConfigError as exc:
            raise serializers.ValidationError({exc.field_name: [str(exc)]}) from exc
        return {**platform, **trainer.to_dict()}

    def validate_model_version(self, pk: int) -> int:
        version = ModelVersion.objects.filter(pk=pk).select_related("base_model").first()
        if version is None:
            raise serializers.ValidationError(f"Unknown model version {pk}.")
        if version.base_model.family == "flow":
            raise serializers.ValidationError(
                f"{version} is a flow-matching model ({version.base_model.pipeline_class}): Diffusion-DPO/KTO tune "
                "Stable Diffusion UNets; tune it with a finetune run (Flow-GRPO against a reward model)."
            )
        return pk

    def validate_dataset(self, pk: int) -> int:
        return check_training_dataset(pk, learner="a preference fine-tune")

    def validate_campaigns(self, ids: list[int]) -> list[int]:
        return check_campaign_ids(ids)

    def validate_exclude_annotators(self, ids: list[int]) -> list[int]:
        return check_annotator_ids(ids)

    def validate_gold_oracle(self, name: str) -> str:
        try:
            return check_oracle_name(name)
        except OracleError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate_name(self, name: str) -> str:
        return name.strip()

    def validate_eval_prompt_set(self, pk: int) -> int:
        return _prompt_set_of_split(pk, Split.EVAL)

    def validate(self, attrs: dict) -> dict:
        if ("dataset" in attrs) == ("campaigns" in attrs):
            raise serializers.ValidationError({"dataset": ["Give either a dataset or campaigns (not both)."]})
        if "campaigns" in attrs:
            attrs["criterion"] = campaigns_criterion(attrs["campaigns"], attrs.get("criterion"))
        elif "criterion" in attrs:
            raise serializers.ValidationError(
                {"criterion": ["A dataset brings its criterion: give it with campaigns."]}
            )
        check_exclusion_source(attrs)
        if "name" in attrs:
            base = ModelVersion.objects.get(pk=attrs["model_version"]).base_model
            if base.versions.filter(name=attrs["name"]).exists():
                raise serializers.ValidationError({"name": [f"{base.name} already has a version {attrs['name']!r}."]})
        return attrs

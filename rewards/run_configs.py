"""Config schemas of the ``reward_train`` and ``evaluate`` runs (validated in the web process; no torch here)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from core import plugins
from core import selectors as core_selectors
from core.ids import IdField
from core.validation import StrictSerializer
from feedback import selectors as feedback_selectors
from feedback.criteria import criteria_of
from feedback.models import Campaign, Purpose
from generators.models import PromptSet
from generators.run_configs import SamplerSettingsSerializer, check_model_version_ids
from rewards.config import DEFAULT_HEAD, HEAD_KINDS, RewardTrainConfig, RewardTrainConfigError
from rewards.dataset_import import ready_dataset_id
from rewards.datasets import several_criteria
from rewards.models import DatasetSource, PreferenceDataset, RewardModel

# The run names its backbone (resolved on the worker); every other RewardTrainConfig field is a run setting.
TRAINING_FIELDS = tuple(name for name in RewardTrainConfig.field_names() if name != "backbone")


def _exists(model, pk: int, label: str) -> int:
    if not model.objects.filter(pk=pk).exists():
        raise serializers.ValidationError(f"Unknown {label} {pk}.")
    return pk


def campaigns_criterion(campaign_ids: list[int], criterion: str | None) -> str:
    """The question to train on: ``criterion`` (every campaign must ask it), or the one question they all ask."""
    campaigns = list(Campaign.objects.filter(pk__in=campaign_ids))
    if criterion is not None:
        try:
            for campaign in campaigns:
                feedback_selectors.criterion_of(campaign, criterion)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"criterion": exc.messages}) from None
        return criterion
    asked = sorted({key for campaign in campaigns for key in criteria_of(campaign.questions)})
    if len(asked) > 1:
        raise serializers.ValidationError(
            {"criterion": [f"These campaigns ask several questions ({', '.join(asked)}): choose one criterion."]}
        )
    return asked[0]


def check_training_dataset(pk: int, learner: str) -> int:
    """A ready dataset of one question's votes (``learner`` learns one preference), or a 400 saying why not."""
    _exists(PreferenceDataset, pk, "dataset")
    ready_dataset_id(pk)
    dataset = PreferenceDataset.objects.only("stats", "criterion").get(pk=pk)
    mixed = several_criteria(dataset.stats, dataset.criterion)
    if mixed:
        raise serializers.ValidationError(
            f"Dataset {pk} holds votes on several questions ({', '.join(mixed)}) and {learner} learns one: "
            "snapshot or import it with one criterion."
        )
    return pk


EXCLUDE_ANNOTATORS_HELP = (
    "ids of annotators whose votes are left out of training (e.g. a deactivated one's: their votes stay stored); "
    "the ids are on the People page"
)


def check_annotator_ids(ids: list[int]) -> list[int]:
    """Known users' ids, each once, in order (a 400 names the unknown ones)."""
    ids = sorted(set(ids))
    missing = sorted(set(ids) - set(core_selectors.usernames_by_id(ids)))
    if missing:
        raise serializers.ValidationError(
            f"Unknown user id(s): {missing}. Give the ids of the annotators to leave out (listed on /people/)."
        )
    return ids


def check_exclusion_source(attrs: dict) -> None:
    """``exclude_annotators`` with a dataset needs a snapshot of campaigns: an imported file's ``user_id`` column
    names people of another platform, not this one's accounts."""
    if not attrs.get("exclude_annotators") or "dataset" not in attrs:
        return
    source = PreferenceDataset.objects.filter(pk=attrs["dataset"]).values_list("source", flat=True).first()
    if source != DatasetSource.CAMPAIGNS:
        raise serializers.ValidationError(
            {
                "exclude_annotators": [
                    f"Dataset {attrs['dataset']} is an imported file: its user ids are not this platform's accounts. "
                    "Exclude annotators from a dataset snapshotted from campaigns, or give campaigns."
                ]
            }
        )


def check_campaign_ids(ids: list[int]) -> list[int]:
    """At least one campaign, every one of them known."""
    missing = sorted(set(ids) - set(Campaign.objects.filter(pk__in=ids).values_list("pk", flat=True)))
    if missing:
        raise serializers.ValidationError(f"Unknown campaign(s): {missing}.")
    if not ids:
        raise serializers.ValidationError("Choose at least one campaign.")
    return ids


class RewardTrainConfigSerializer(StrictSerializer):
    """Data (a dataset, or campaigns snapshotted when the run starts), backbone and the training settings.

    The training settings are the fields of :class:`rewards.config.RewardTrainConfig` (all of them but
    ``backbone``, which here is a name the worker resolves: ``sandbox``, a hub id or a folder), given at the
    top level and checked by that class, so the run accepts exactly what the trainer does.
    """

    name = serializers.CharField(max_length=200, required=False, help_text="reward model name (default: reward-<run>)")
    dataset = IdField(required=False)
    campaigns = serializers.ListField(child=IdField(), required=False, max_length=100)
    include_flagged = serializers.BooleanField(default=False)
    gold_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.7)
    min_gold = serializers.IntegerField(min_value=1, max_value=10_000, default=5)
    exclude_annotators = serializers.ListField(
        child=IdField(), required=False, max_length=1000, help_text=EXCLUDE_ANNOTATORS_HELP
    )
    both_bad_as_tie = serializers.BooleanField(default=True)
    criterion = serializers.CharField(
        max_length=100,
        required=False,
        help_text="with campaigns: train on the votes on this question (needed when they ask several)",
    )
    backbone = serializers.CharField(
        max_length=500,
        default=lambda: settings.DEFAULT_REWARD_BACKBONE,
        help_text="a registered reward_backbone name (the sandbox's: 'sandbox'), a CLIP hub id or local folder "
        "(default: the DEFAULT_REWARD_BACKBONE setting)",
    )
    val_fraction = serializers.FloatField(min_value=0.0, max_value=0.5, default=0.15)
    test_fraction = serializers.FloatField(min_value=0.0, max_value=0.5, default=0.15)

    def get_fields(self) -> dict[str, serializers.Field]:
        """The declared fields plus one per training setting: listed and documented here, checked by
        :meth:`RewardTrainConfig.from_dict` in :meth:`validate` (one definition of their ranges)."""
        fields = super().get_fields()
        for name in TRAINING_FIELDS:
            help_text = RewardTrainConfig.describe(name)
            fields[name] = serializers.JSONField(required=False, allow_null=True, help_text=help_text)
        return fields

    def validate_name(self, name: str) -> str:
        if RewardModel.objects.filter(name=name).exists():
            raise serializers.ValidationError(f"A reward model named {name!r} already exists.")
        return name

    def validate_dataset(self, pk: int) -> int:
        return check_training_dataset(pk, learner="a reward model")

    def validate_campaigns(self, ids: list[int]) -> list[int]:
        return check_campaign_ids(ids)

    def validate_exclude_annotators(self, ids: list[int]) -> list[int]:
        return check_annotator_ids(ids)

    def validate(self, attrs: dict) -> dict:
        training = {name: attrs.pop(name) for name in TRAINING_FIELDS if name in attrs}
        try:
            checked = RewardTrainConfig.from_dict(training).to_dict()
        except RewardTrainConfigError as exc:
            raise serializers.ValidationError({exc.field_name: [exc.reason]}) from exc
        attrs.update({name: checked[name] for name in TRAINING_FIELDS})
        if ("dataset" in attrs) == ("campaigns" in attrs):
            raise serializers.ValidationError({"dataset": ["Give either a dataset or campaigns (not both)."]})
        if "campaigns" in attrs:
            attrs["criterion"] = campaigns_criterion(attrs["campaigns"], attrs.get("criterion"))
        elif "criterion" in attrs:
            raise serializers.ValidationError(
                {"criterion": ["A dataset brings its criterion: give it with campaigns."]}
            )
        check_exclusion_source(attrs)
        if attrs["val_fraction"] <= 0:
            raise serializers.ValidationError({"val_fraction": ["Validation picks the best checkpoint: use > 0."]})
        if attrs["val_fraction"] + attrs["test_fraction"] >= 0.9:
            raise serializers.ValidationError({"test_fraction": ["Leave at least 10% of the prompts for training."]})
        return attrs


EVALUATE_METRICS = ("clip_score", "fid_clip", "fid_inception", "diversity", "reward_win_rate")
REFERENCE_METRICS = frozenset({"fid_clip", "fid_inception"})  # compared with the prompt set's reference set


class EvaluateConfigSerializer(SamplerSettingsSerializer):
    """Score model versions' images of a prompt set under the sampler settings (absent: each version's defaults)
    with a reward model, and/or measure automatic ``metrics`` (missing images, and with metrics the versions'
    parents' images, are generated first)."""

    reward_model = IdField(required=False, help_text="score every image with this reward model (stored scores)")
    model_versions = serializers.ListField(child=IdField(), min_length=1, max_length=16)
    prompt_set = IdField()
    images_per_prompt = serializers.IntegerField(min_value=1, max_value=64, default=2)
    batch_size = serializers.IntegerField(min_value=1, max_value=1024, default=64)
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")
    metrics = serializers.ListField(
        child=serializers.ChoiceField(choices=EVALUATE_METRICS),
        required=False,
        max_length=len(EVALUATE_METRICS),
        help_text="automatic metrics per version, with bootstrap intervals over prompts: clip_score, fid_clip "
        "(Fréchet distance to the prompt set's reference images in CLIP space), fid_inception (the same in the FID "
        "InceptionV3's features: needs INCEPTION_WEIGHTS_PATH), diversity (among a prompt's seeds: "
        "images_per_prompt ≥ 2), reward_win_rate (against the parent under each reward model)",
    )
    clip = serializers.CharField(
        max_length=100,
        default=lambda: settings.DEFAULT_REWARD_BACKBONE,
        help_text="the registered CLIP (a reward_backbone name) of clip_score, fid_clip and diversity",
    )
    reference_set = IdField(
        required=False,
        help_text="fid_clip's and fid_inception's reference images (default: the newest registered for the prompt set)",
    )
    reward_models = serializers.ListField(
        child=IdField(), required=False, max_length=32, help_text="reward_win_rate under these (default: every one)"
    )
    bootstrap_resamples = serializers.IntegerField(min_value=10, max_value=10_000, default=1000)

    def validate_reward_model(self, pk: int) -> int:
        return _exists(RewardModel, pk, "reward model")

    def validate_prompt_set(self, pk: int) -> int:
        return _exists(PromptSet, pk, "prompt set")

    def validate_model_versions(self, ids: list[int]) -> list[int]:
        return check_model_version_ids(ids)

    def validate_reward_models(self, ids: list[int]) -> list[int]:
        missing = sorted(set(ids) - set(RewardModel.objects.filter(pk__in=ids).values_list("pk", flat=True)))
        if missing:
            raise serializers.ValidationError(f"Unknown reward model(s): {missing}.")
        return list(dict.fromkeys(ids))

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        metrics = list(dict.fromkeys(attrs.get("metrics", [])))
        if not metrics and "reward_model" not in attrs:
            raise serializers.ValidationError(
                {"reward_model": ["Give a reward model to score with, or metrics to measure (or both)."]}
            )
        if not metrics:
            return attrs
        attrs["metrics"] = metrics
        if set(metrics) & {"clip_score", "fid_clip", "diversity"} and attrs["clip"] not in plugins.names(
            "reward_backbone"
        ):
            names = ", ".join(sorted(plugins.names("reward_backbone"))) or "none"
            raise serializers.ValidationError({"clip": [f"{attrs['clip']!r} is not a registered CLIP ({names})."]})
        if "diversity" in metrics and attrs["images_per_prompt"] < 2:
            raise serializers.ValidationError(
                {"images_per_prompt": ["diversity compares a prompt's seeds: use images_per_prompt ≥ 2."]}
            )
        if "fid_inception" in metrics and not settings.INCEPTION_WEIGHTS_PATH:
            raise serializers.ValidationError(
                {
                    "metrics": [
                        "fid_inception needs the FID InceptionV3's weights: set INCEPTION_WEIGHTS_PATH to a local "
                        "weights file on the workers (never downloaded), or leave fid_inception out."
                    ]
                }
            )
        if REFERENCE_METRICS & set(metrics):
            attrs["reference_set"] = _reference_set_of(attrs.get("reference_set"), attrs["prompt_set"])
        if "reward_win_rate" in metrics:
            attrs.setdefault("reward_models", list(RewardModel.objects.order_by("pk").values_list("pk", flat=True)))
            if not attrs["reward_models"]:
                raise serializers.ValidationError(
                    {"metrics": ["reward_win_rate needs a reward model: register or train one first."]}
                )
        return attrs


def _reference_set_of(pk: int | None, prompt_set_id: int) -> int:
    """The reference set to compare with: ``pk`` (which must be of the prompt set) or the set's newest."""
    from rewards.metric_selectors import newest_reference_set
    from rewards.models import ReferenceSet

    if pk is None:
        newest = newest_reference_set(prompt_set_id)
        if newest is None:
            raise serializers.ValidationError(
                {
                    "reference_set": [
                        f"No reference set is registered for prompt set {prompt_set_id}: register one "
                        "(manage.py register_reference_set) or leave fid_clip and fid_inception out."
                    ]
                }
            )
        return newest.pk
    found = ReferenceSet.objects.filter(pk=pk).values_list("prompt_set_id", flat=True).first()
    if found is None:
        raise serializers.ValidationError({"reference_set": [f"Unknown reference set {pk}."]})
    if found != prompt_set_id:
        raise serializers.ValidationError(
            {"reference_set": [f"Reference set {pk} belongs to prompt set {found}, not {prompt_set_id}."]}
        )
    return pk


class SelectionRefitConfigSerializer(StrictSerializer):
    """Refit a ``collect`` campaign's quick reward model on its votes so far: hand-out priorities (``uncertainty``
    campaigns) and a learning curve (see ``rewards.refit``). Started by the periodic check every
    ``refit_every`` votes; the settings below are for tests and experiments."""

    campaign = IdField()
    backbone = serializers.CharField(
        max_length=500,
        default=lambda: settings.DEFAULT_REWARD_BACKBONE,
        help_text="a registered reward_backbone name, a CLIP hub id or local folder (default: DEFAULT_REWARD_BACKBONE)",
    )
    head = serializers.ChoiceField(choices=HEAD_KINDS, default=DEFAULT_HEAD, help_text="the quick model's head kind")
    ensemble_size = serializers.IntegerField(min_value=1, max_value=16, default=5)
    curve_points = serializers.IntegerField(
        min_value=1, max_value=8, default=4, help_text="fits at 1/n, 2/n ... of the votes so far (n = curve_points)"
    )
    test_fraction = serializers.FloatField(
        min_value=0.05, max_value=0.5, default=0.2, help_text="share of the prompts held out for the curve"
    )
    min_votes = serializers.IntegerField(
        min_value=1, max_value=100_000, default=20, help_text="fewer decisive votes: zero-shot priorities, no fit"
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")

    def validate_campaign(self, pk: int) -> int:
        purpose = Campaign.objects.filter(pk=pk).values_list("purpose", flat=True).first()
        if purpose is None:
            raise serializers.ValidationError(f"Unknown campaign {pk}.")
        if purpose != Purpose.COLLECT:
            raise serializers.ValidationError(f"Campaign {pk} is an {purpose} campaign: refits are for collect ones.")
        return pk

"""What the run forms need that the kinds' serializers do not say, registered with core at start-up.

- Extra fields (``core.form_schema.register_extra_fields``): the trainer settings that ``finetune``,
  ``preference_tune`` and ``reward_train`` take at the top level of their config and check with their own
  dataclasses (``finetune.config.DDPOConfig``, ``finetune.preference_config.PreferenceTuneConfig``,
  ``rewards.config.RewardTrainConfig``), described from those dataclasses: type and default, integer ranges
  (``INT_RANGES``; ``RewardTrainConfig``'s rules give every range), choices; and the registered oracles' names
  for the ``oracle`` fields.
- Which model an ``IdField`` names, by field name (``core.form_schema.register_id_source``), read through the
  owning app's selectors.
- Presets (``core.run_presets``): "quick sandbox" settings and the published settings for Stable Diffusion.

Nothing here validates: the serializers do, and the form shows their answers. (These could move next to the
serializers as ``form_extra_fields()`` classmethods, which core prefers when a serializer has one.)
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from core import form_schema, plugins, run_presets
from core.form_schema import IdSource

CHAMPION_ALIAS = "champion"


# --- Id fields ---------------------------------------------------------------------------------------------------


def _model_versions(user, limit: int):
    from generators import selectors

    versions = selectors.model_versions().order_by("-pk")[:limit]
    return [(version.pk, str(version)) for version in versions]


def _prompt_sets(user, limit: int):
    from generators import selectors

    return [
        (s.pk, f"{s.name} ({s.split}, {s.prompt_count} prompts)")
        for s in selectors.prompt_sets().order_by("-pk")[:limit]
    ]


def _reward_models(user, limit: int):
    from rewards import selectors

    return [(model.pk, model.name) for model in selectors.reward_models().order_by("-pk")[:limit]]


def _reference_sets(user, limit: int):
    from rewards import metric_selectors

    return [(r.pk, f"{r.name} (prompt set {r.prompt_set.name})") for r in metric_selectors.reference_sets()[:limit]]


def _datasets(user, limit: int):
    from rewards import selectors

    return [(d.pk, f"{d.name} ({d.state})") for d in selectors.datasets().order_by("-pk")[:limit]]


def _campaigns(user, limit: int):
    from feedback import selectors

    return [
        (c.pk, f"{c.name} ({c.purpose}, {c.status})") for c in selectors.campaigns_for(user).order_by("-pk")[:limit]
    ]


def _annotators(user, limit: int):
    """People who may have voted (annotators and reviewers, inactive ones too: a deactivated annotator's votes
    are the ones most often left out)."""
    from core import selectors
    from core.roles import Role

    people = (
        selectors.users_with_roles()
        .filter(groups__name__in=[Role.ANNOTATOR.value, Role.REVIEWER.value])
        .distinct()
        .order_by("-pk")[:limit]
    )
    return [(person.pk, person.username + ("" if person.is_active else " (inactive)")) for person in people]


ID_SOURCES = {
    ("model_version", "model_versions"): IdSource("generators.ModelVersion", _model_versions),
    ("prompt_set", "train_prompt_set", "eval_prompt_set"): IdSource("generators.PromptSet", _prompt_sets),
    ("reward_model", "reward_models"): IdSource("rewards.RewardModel", _reward_models),
    ("dataset",): IdSource("rewards.PreferenceDataset", _datasets),
    ("reference_set",): IdSource("rewards.ReferenceSet", _reference_sets),
    ("campaign", "campaigns"): IdSource("feedback.Campaign", _campaigns),
    ("exclude_annotators",): IdSource("auth.User", _annotators),
}


# --- Trainer settings --------------------------------------------------------------------------------------------


def _oracle_choices(serializer_class, names: tuple[str, ...]) -> list[dict]:
    """The declared oracle fields as choices of the registered oracles (the serializer still checks the name)."""
    declared = serializer_class().fields
    oracles = [{"value": name, "label": name} for name in plugins.names("oracle")]
    specs = []
    for name in names:
        spec = form_schema.describe_field(name, declared[name])
        specs.append({**spec, "type": "choice", "choices": oracles})
    return specs


def finetune_fields() -> list[dict]:
    from finetune import config
    from finetune.run_configs import FinetuneConfigSerializer

    return [
        *_oracle_choices(FinetuneConfigSerializer, ("oracle", "gold_oracle")),
        *form_schema.dataclass_field_specs(
            config.DDPOConfig,
            group="DDPO / Flow-GRPO and LoRA settings",
            main=("algorithm",),
            int_ranges=config.INT_RANGES,
            choices={
                "algorithm": config.ALGORITHMS,
                "mixed_precision": config.MIXED_PRECISION,
                "advantage_stats": config.ADVANTAGE_STATS,
            },
            overrides={
                "algorithm": {"help_text": "auto: DDPO for a UNet, Flow-GRPO for a flow transformer"},
                "lora_targets": {"help_text": "LoRA target modules, comma-separated (e.g. to_q, to_k, to_v, to_out.0)"},
            },
        ),
    ]


def preference_tune_fields() -> list[dict]:
    from finetune import preference_config
    from finetune.config import MIXED_PRECISION
    from finetune.run_configs import PreferenceTuneConfigSerializer

    return [
        *_oracle_choices(PreferenceTuneConfigSerializer, ("gold_oracle",)),
        *form_schema.dataclass_field_specs(
            preference_config.PreferenceTuneConfig,
            group="Diffusion-DPO / KTO and LoRA settings",
            main=("algorithm",),
            int_ranges=preference_config.INT_RANGES,
            choices={
                "algorithm": preference_config.ALGORITHMS,
                "ties": preference_config.TIE_POLICIES,
                "mixed_precision": MIXED_PRECISION,
            },
            overrides={
                "lora_targets": {"help_text": "LoRA target modules, comma-separated (e.g. to_q, to_k, to_v, to_out.0)"}
            },
        ),
    ]


def reward_train_fields() -> list[dict]:
    """``RewardTrainConfig``'s fields but ``backbone`` (the run names one), each with its rule's range or choices."""
    import dataclasses

    from rewards.config import RewardTrainConfig

    overrides: dict[str, dict[str, Any]] = {}
    choices: dict[str, tuple[str, ...]] = {}
    for field in dataclasses.fields(RewardTrainConfig):
        rule = field.metadata["rule"]
        if rule.choices:
            choices[field.name] = rule.choices
        elif rule.kind in (int, float):
            overrides[field.name] = {
                "min": rule.low,
                "max": rule.high,
                "min_exclusive": rule.low_open,
                "max_exclusive": rule.high_open,
            }
    return form_schema.dataclass_field_specs(
        RewardTrainConfig,
        group="Training settings",
        main=("head", "search"),
        exclude=("backbone",),
        choices=choices,
        overrides=overrides,
    )


# --- Presets -----------------------------------------------------------------------------------------------------


def _champion() -> int | None:
    from generators import selectors

    alias = selectors.aliases().filter(name=CHAMPION_ALIAS).first()
    return alias.version_id if alias else None


def _prompt_set(name: str) -> int | None:
    from generators import selectors

    return selectors.prompt_sets().filter(name=name).values_list("pk", flat=True).first()


def _oracle(name: str) -> str | None:
    return name if name in plugins.names("oracle") else None


def _quick_generate() -> dict:
    champion = _champion()
    return {
        "model_versions": [champion] if champion else None,
        "prompt_set": _prompt_set(settings.DEFAULT_EVAL_PROMPT_SET),
        "images_per_prompt": 1,
        "steps": 10,
        "batch_size": 16,
    }


def _quick_evaluate() -> dict:
    from rewards.score_selectors import default_reward_model

    reward_model = default_reward_model()
    return {**_quick_generate(), "reward_model": reward_model.pk if reward_model else None, "batch_size": 64}


def _quick_finetune() -> dict:
    return {
        "model_version": _champion(),
        "oracle": _oracle("area"),
        "train_prompt_set": _prompt_set(settings.DEFAULT_TRAIN_PROMPT_SET),
        "eval_prompt_set": _prompt_set(settings.DEFAULT_EVAL_PROMPT_SET),
        "epochs": 4,
        "samples_per_epoch": 16,
        "images_per_prompt": 4,
        "sample_batch_size": 16,
        "train_batch_size": 8,
        "steps": 10,
        "eval_every": 2,
        "eval_images_per_prompt": 1,
        "grid_prompts": 4,
    }


def _quick_preference_tune() -> dict:
    return {
        "model_version": _champion(),
        "eval_prompt_set": _prompt_set(settings.DEFAULT_EVAL_PROMPT_SET),
        "train_steps": 100,
        "checkpoint_every": 50,
        "eval_every": 50,
        "grid_prompts": 4,
    }


def _sd15_finetune() -> dict:
    from finetune.config import SD_RECOMMENDED

    return dict(SD_RECOMMENDED)


def _sd15_preference_tune() -> dict:
    from finetune.preference_config import SD_RECOMMENDED

    return dict(SD_RECOMMENDED)


PICKSCORE_BACKBONE = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # the CLIP-H PickScore was fine-tuned from


def _pickscore() -> dict:
    """``RewardTrainConfig.pickscore``'s settings where they differ from the defaults (and its backbone)."""
    from rewards.config import RewardTrainConfig

    published = RewardTrainConfig.pickscore(PICKSCORE_BACKBONE).to_dict()
    defaults = RewardTrainConfig().to_dict()
    return {key: value for key, value in published.items() if value != defaults[key]}


PRESETS = [
    run_presets.Preset(
        "generate",
        "quick sandbox",
        "The champion version on the default eval prompts: one image per prompt, 10 steps.",
        _quick_generate,
    ),
    run_presets.Preset(
        "evaluate",
        "quick sandbox",
        "The newest reward model scores the champion's images of the default eval prompts (one per prompt).",
        _quick_evaluate,
    ),
    run_presets.Preset(
        "finetune",
        "quick sandbox",
        "DDPO on the champion against the sandbox's area oracle: 4 small epochs, a minute or two on a CPU.",
        _quick_finetune,
    ),
    run_presets.Preset(
        "finetune",
        "SD 1.5 LoRA",
        "The DDPO paper's settings for Stable Diffusion 1.x (choose the version, prompts and reward).",
        _sd15_finetune,
    ),
    run_presets.Preset(
        "preference_tune",
        "quick sandbox",
        "Diffusion-DPO on the champion, 100 steps (choose the dataset or campaigns of votes).",
        _quick_preference_tune,
    ),
    run_presets.Preset(
        "preference_tune",
        "SD 1.5 LoRA",
        "Wallace et al.'s beta and the diffusers example's learning rate, with LoRA, for Stable Diffusion 1.5.",
        _sd15_preference_tune,
    ),
    run_presets.Preset(
        "reward_train",
        "heads search",
        "Try the frozen-backbone heads and keep the best by cross-validation (seconds each; the cycle's choice).",
        {"search": True, "search_grid": "heads"},
    ),
    run_presets.Preset(
        "reward_train",
        "PickScore (CLIP-H)",
        "PickScore's published settings: fine-tune CLIP-H (needs a GPU and the hub's weights).",
        _pickscore,
    ),
]


def register() -> None:
    """Called by ``FrontendConfig.ready`` (every app's serializers are importable by then)."""
    from finetune.run_configs import FinetuneConfigSerializer, PreferenceTuneConfigSerializer
    from rewards.run_configs import RewardTrainConfigSerializer

    for names, source in ID_SOURCES.items():
        form_schema.register_id_source(names, source)
    form_schema.register_extra_fields(FinetuneConfigSerializer, finetune_fields)
    form_schema.register_extra_fields(PreferenceTuneConfigSerializer, preference_tune_fields)
    form_schema.register_extra_fields(RewardTrainConfigSerializer, reward_train_fields)
    for preset in PRESETS:
        run_presets.register(preset)

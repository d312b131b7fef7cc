"""The ``preference_tune`` run: Diffusion-DPO or Diffusion-KTO on a model version from a dataset of votes.

The ML lives in :mod:`finetune.preference_trainer` (no Django). This adapter takes the dataset (or snapshots the
campaigns once, as ``reward_train`` does), keeps one question's votes, builds the algorithm's examples, runs the
trainer with the run's JobContext (checkpoints, metrics, cancel) and records the result as ``finetune`` does: the
adapter as an artifact, a new immutable ModelVersion whose parent is the tuned version, and a FineTune row with
the algorithm and the dataset (the lineage from the new version back to the votes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from tempfile import TemporaryDirectory

from django.conf import settings

from core import services as run_services
from core.devices import DeviceUnavailable, resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Run
from finetune.executors import ADAPTER_ARTIFACT, check_version_name, record_version
from generators import selectors as generator_selectors
from generators.models import ModelVersion
from generators.pipeline import LORA_WEIGHT_NAME, PipelineLoadError, load_pipeline
from rewards.executors import excluded_annotators_of, training_rows

LATENT_CACHE = "latent-cache"  # under VAR_DIR: VAE latents of stored images, shared by runs on the same VAE


UNET_ONLY = (
    "Diffusion-DPO/KTO tune Stable Diffusion UNets (SD 1.x/2.x, SDXL); tune a flow-matching model with a finetune "
    "run (Flow-GRPO against a reward model)"
)


def preference_tune(run: Run, ctx: JobContext) -> dict:
    from finetune.config import ConfigError
    from finetune.oracles import OracleError, resolve_oracle
    from finetune.preference_config import PreferenceTuneConfig
    from finetune.preference_data import PreferenceDataError, build_examples
    from finetune.preference_trainer import run_preference_tune
    from finetune.reward import per_image

    config = run.config
    names = {field.name for field in dataclasses.fields(PreferenceTuneConfig)}
    settings_fields = PreferenceTuneConfig.from_dict({key: config[key] for key in names if key in config})
    parent = ModelVersion.objects.select_related("base_model", "adapter").get(pk=config["model_version"])
    check_version_name(run, parent)
    dataset, rows = training_rows(run)
    try:
        examples = build_examples(rows, settings_fields.algorithm, ties=settings_fields.ties)
        gold = per_image(resolve_oracle(config["gold_oracle"])) if config.get("gold_oracle") else None
    except (PreferenceDataError, OracleError) as exc:
        raise JobFailed(f"Dataset {dataset.name!r}: {exc}") from exc
    try:
        device = resolve_device(config["device"])
        pipe = load_pipeline(generator_selectors.pipeline_spec_for(parent, device=device, with_adapter=False))
    except (PipelineLoadError, DeviceUnavailable) as exc:
        raise JobFailed(f"Cannot load {parent}: {exc}") from exc
    if getattr(pipe, "unet", None) is None:
        raise JobFailed(f"{parent} is a {type(pipe).__name__}: {UNET_ONLY}")
    parent_lora = generator_selectors.adapter_folder(parent)
    eval_prompts = [p.text for p in generator_selectors.prompts_of(config["eval_prompt_set"])]
    with TemporaryDirectory() as folder:
        try:
            result = run_preference_tune(
                pipe,
                settings_fields,
                examples,
                eval_prompts,
                ctx,
                folder,
                gold_reward_fn=gold,
                parent_lora=parent_lora,
                latent_cache_dir=Path(settings.VAR_DIR) / LATENT_CACHE,
            )
        except ConfigError as exc:
            raise JobFailed(f"Bad fine-tuning setting {exc}") from exc
        weights = Path(folder) / LORA_WEIGHT_NAME
        ctx.save_artifact(ADAPTER_ARTIFACT, weights.read_bytes(), kind="lora_adapter", metadata={"format": "diffusers"})
    summary = result.summary
    label = {"diffusion_dpo": "Diffusion-DPO", "diffusion_kto": "Diffusion-KTO"}[settings_fields.algorithm]
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        version = record_version(
            run, parent, summary, notes=f"{label} on dataset {dataset.name!r}", dataset_id=dataset.pk
        )
    return {
        "model_version": version.pk,
        "version_name": version.name,
        "parent": parent.pk,
        "dataset": dataset.pk,
        "excluded_annotators": excluded_annotators_of(run),
        "algorithm": settings_fields.algorithm,
        "examples": summary["examples"],
        "dropped": summary["dropped"],
        "images_encoded": summary["images_encoded"],
        "final_implicit_accuracy": summary["final_implicit_accuracy"],
        "final_loss": summary["final_loss"],
        "eval_gold_reward_before": summary["eval_gold_reward_before"],
        "eval_gold_reward_after": summary["eval_gold_reward_after"],
        "steps": summary["steps"],
        "evals": summary["evals"],
    }

"""The ``finetune`` run: DDPO on a model version against a reward model or a pixel oracle → a new model version.

The ML lives in :mod:`finetune.trainer` (no Django); this adapter loads what the config names, runs it with the
run's JobContext (checkpoints, metrics, cancel) and records the result: the adapter as an artifact, a new
immutable ModelVersion whose parent is the tuned version (through ``generators.services``), and a FineTune row
linking the reward used. The new version's name is checked before training starts; if another version took it
while the run trained, the run fails saying so and the adapter stays an artifact of the run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from tempfile import TemporaryDirectory

from django.core.exceptions import ValidationError
from django.db import transaction

from core import services as run_services
from core.devices import DeviceUnavailable, resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Artifact, Run
from core.storage import artifact_local_path
from finetune import services
from finetune.models import FineTune
from generators import selectors as generator_selectors
from generators import services as generator_services
from generators.models import ModelVersion
from generators.pipeline import LORA_WEIGHT_NAME, PipelineLoadError, load_pipeline
from rewards.loading import reward_function_for
from rewards.models import RewardModel

ADAPTER_ARTIFACT = LORA_WEIGHT_NAME
GRID_ARTIFACT = "eval_grid.png"
MIX_ARTIFACT = "reward_mix.json"


def _recorded_mix_stats(run: Run):
    """The standardisation statistics an earlier attempt of this run recorded for its reward mix, or None."""
    from finetune.reward import ScoreStats

    artifact = Artifact.objects.filter(run=run, name=MIX_ARTIFACT).first()
    if artifact is None:
        return None
    recorded = json.loads(artifact_local_path(artifact).read_bytes())
    return [ScoreStats(**entry["stats"]) for entry in recorded["rewards"]]


def _reward_mix(run: Run, ctx: JobContext, device: str):
    """The weighted mix of the config's reward models; the statistics that standardise them are taken on the first
    batch scored and recorded as the artifact ``reward_mix.json``, which a later attempt of the run reuses."""
    from finetune.reward import WeightedRewardMix

    entries = run.config["reward_models"]
    rewards = [
        reward_function_for(RewardModel.objects.get(pk=entry["reward_model"]), device=device) for entry in entries
    ]

    def record(stats) -> None:
        mixed = [{**entry, "stats": s.to_dict()} for entry, s in zip(entries, stats, strict=True)]
        body = json.dumps({"rewards": mixed}, indent=1).encode()
        ctx.save_artifact(MIX_ARTIFACT, body, kind="reward_mix", metadata={"standardised_on": "first scored batch"})

    weights = [entry["weight"] for entry in entries]
    return WeightedRewardMix(rewards, weights, stats=_recorded_mix_stats(run), on_calibrated=record)


def _reward_callables(run: Run, ctx: JobContext, device: str):
    from finetune.oracles import OracleError, resolve_oracle
    from finetune.reward import per_image

    config = run.config
    try:
        if "reward_model" in config:
            reward_model = RewardModel.objects.get(pk=config["reward_model"])
            reward = reward_function_for(reward_model, device=device)
        elif "reward_models" in config:
            reward = _reward_mix(run, ctx, device)
        else:
            reward = per_image(resolve_oracle(config["oracle"]))
        gold = per_image(resolve_oracle(config["gold_oracle"])) if config.get("gold_oracle") else None
    except OracleError as exc:
        raise JobFailed(str(exc)) from exc
    except OSError as exc:
        raise JobFailed(f"The reward model could not be loaded: {exc}") from exc
    return reward, gold


def _ddpo_settings(config: dict) -> dict:
    from finetune.config import DDPOConfig

    return {field.name: config[field.name] for field in dataclasses.fields(DDPOConfig) if field.name in config}


def finetune(run: Run, ctx: JobContext) -> dict:
    from finetune.config import ConfigError
    from finetune.trainer import run_ddpo

    config = run.config
    parent = ModelVersion.objects.select_related("base_model", "adapter").get(pk=config["model_version"])
    try:
        device = resolve_device(config["device"])
        pipe = load_pipeline(generator_selectors.pipeline_spec_for(parent, device=device, with_adapter=False))
    except (PipelineLoadError, DeviceUnavailable) as exc:
        raise JobFailed(f"Cannot load {parent}: {exc}") from exc
    algorithm = _algorithm_for(config, pipe)
    check_version_name(run, parent, algorithm)
    parent_lora = generator_selectors.adapter_folder(parent)  # the trainer continues the parent's adapter
    reward, gold = _reward_callables(run, ctx, device)
    train_prompts = [p.text for p in generator_selectors.prompts_of(config["train_prompt_set"])]
    eval_prompts = [p.text for p in generator_selectors.prompts_of(config["eval_prompt_set"])]
    with TemporaryDirectory() as folder:
        try:
            result = run_ddpo(
                pipe, _ddpo_settings(config), reward, train_prompts, eval_prompts, ctx, folder, gold, parent_lora
            )
        except ConfigError as exc:
            raise JobFailed(f"Bad fine-tuning setting {exc}") from exc
        weights = Path(folder) / LORA_WEIGHT_NAME
        ctx.save_artifact(ADAPTER_ARTIFACT, weights.read_bytes(), kind="lora_adapter", metadata={"format": "diffusers"})
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        notes = f"{ALGORITHM_LABEL[algorithm]} against {_reward_label(config)}"
        summary = _with_mix(run, result.summary)
        version = record_version(run, parent, summary, notes=notes, algorithm=algorithm)
    summary = result.summary
    return {
        "model_version": version.pk,
        "version_name": version.name,
        "parent": parent.pk,
        "eval_reward_before": summary["eval_reward_before"],
        "eval_reward_after": summary["eval_reward_after"],
        "eval_gold_reward_before": summary["eval_gold_reward_before"],
        "eval_gold_reward_after": summary["eval_gold_reward_after"],
        "epochs": summary["epochs"],
        "evals": summary["evals"],
        "algorithm": algorithm,
    }


ALGORITHM_LABEL = {"ddpo": "DDPO", "flow_grpo": "Flow-GRPO"}


def _algorithm_for(config: dict, pipe) -> str:
    """The RL algorithm for this pipeline (:func:`finetune.trainer.algorithm_for`), known before training so that
    the new version's name can be checked; a config that asks for the other one fails saying why."""
    from finetune.config import ConfigError
    from finetune.trainer import algorithm_for

    try:
        return algorithm_for(pipe, config.get("algorithm", "auto"))
    except ConfigError as exc:
        raise JobFailed(f"Bad fine-tuning setting {exc}") from exc


def _reward_label(config: dict) -> str:
    if "reward_model" in config:
        return f"reward model {config['reward_model']}"
    if "reward_models" in config:
        mix = " + ".join(f"{e['weight']:g} × reward model {e['reward_model']}" for e in config["reward_models"])
        return f"a mix of standardised rewards: {mix}"
    return f"oracle {config['oracle']}"


def _with_mix(run: Run, summary: dict) -> dict:
    """The summary, with the reward mix and its standardisation statistics when the run optimised one (the
    FineTune row then names no single reward model)."""
    if "reward_models" not in run.config:
        return summary
    stats = _recorded_mix_stats(run) or [None] * len(run.config["reward_models"])
    mix = [{**e, "stats": s.to_dict() if s else None} for e, s in zip(run.config["reward_models"], stats, strict=True)]
    return {**summary, "reward_mix": mix}


NAME_PREFIX = {"ddpo": "ddpo", "flow_grpo": "grpo", "diffusion_dpo": "dpo", "diffusion_kto": "kto"}


def version_name(run: Run, algorithm: str | None = None) -> str:
    """The new version's name: the config's, else ``<ddpo|grpo|dpo|kto>-<run id>``."""
    return run.config.get("name") or f"{NAME_PREFIX[algorithm or run.config.get('algorithm', 'ddpo')]}-{run.pk}"


def check_version_name(run: Run, parent: ModelVersion, algorithm: str | None = None) -> None:
    """Fail before training when the new version's name is taken (unless this run made that version itself)."""
    name = version_name(run, algorithm)
    taken = generator_selectors.model_versions().filter(base_model=parent.base_model, name=name)
    if taken.exclude(produced_by_run=run).exists():
        raise JobFailed(f"{parent.base_model.name} already has a version {name!r}; start the run with another name.")


def record_version(
    run: Run,
    parent: ModelVersion,
    summary: dict,
    *,
    notes: str,
    dataset_id: int | None = None,
    algorithm: str | None = None,
) -> ModelVersion:
    """Create the new version and its FineTune row once (a retried run finds them); call it inside
    ``run_fenced``. ``algorithm``: the one trained with (default: the config's)."""
    existing = FineTune.objects.filter(run=run).select_related("version").first()
    if existing is not None:
        return existing.version
    algorithm = algorithm or run.config.get("algorithm", "ddpo")
    config, name = run.config, version_name(run, algorithm)
    adapter = Artifact.objects.get(run=run, name=ADAPTER_ARTIFACT)
    with transaction.atomic():
        try:
            version = generator_services.model_version_create(
                base_model=parent.base_model,
                name=name,
                parent=parent,
                adapter=adapter,
                produced_by_run=run,
                notes=notes,
                created_by=run.created_by,
            )
        except ValidationError as exc:
            raise JobFailed(
                f"Another version of {parent.base_model.name} took the name {name!r} while this run trained, so no "
                f"version was recorded. The trained adapter is kept as the artifact {ADAPTER_ARTIFACT!r} of run "
                f"{run.pk} (artifact {adapter.pk})."
            ) from exc
        services.finetune_record(
            run=run,
            parent=parent,
            version=version,
            reward_model_id=config.get("reward_model"),
            oracle=config.get("oracle", ""),
            algorithm=algorithm,
            dataset_id=dataset_id,
            summary=summary,
        )
    return version

"""The ``reward_train`` and ``evaluate`` runs: thin adapters between Run rows and the ML code in this package."""

from __future__ import annotations

import statistics
import tempfile
from collections import defaultdict

from core import services as run_services
from core.devices import resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Artifact, Run
from core.storage import stored_file_local_path, zip_directory
from feedback.models import Campaign
from feedback.pickapic import read_parquet
from generators.executors import generate_missing_images
from generators.models import PromptSetItem
from generators.pipeline import resolve_dtype_name
from generators.run_configs import GenerateConfigSerializer
from generators.sampler_settings import SettingsRequest
from generators.selectors import images_for
from rewards import services
from rewards.config import RewardTrainConfig, RewardTrainConfigError
from rewards.datasets import rows_of_criterion
from rewards.loading import resolve_backbone, reward_function_for
from rewards.models import ImageScore, PreferenceDataset, RewardModel
from rewards.run_configs import TRAINING_FIELDS

MODEL_ARTIFACT = "reward_model.zip"


def dataset_of_run(run: Run) -> PreferenceDataset:
    """The run's dataset (config ``dataset``), or a snapshot of its ``campaigns`` (with ``include_flagged``,
    ``gold_threshold``, ``min_gold``, ``criterion``) taken once: a retried run reuses its snapshot."""
    config = run.config
    if "dataset" in config:
        return PreferenceDataset.objects.get(pk=config["dataset"])
    name = f"run-{run.pk}-votes"
    existing = PreferenceDataset.objects.filter(name=name).first()
    if existing is not None:
        return existing
    try:
        return services.dataset_snapshot(
            name=name,
            campaigns=Campaign.objects.filter(pk__in=config["campaigns"]).order_by("pk"),
            include_flagged=config["include_flagged"],
            gold_threshold=config["gold_threshold"],
            min_gold=config["min_gold"],
            criterion=config.get("criterion", ""),
            created_by=run.created_by,
        )
    except services.ValidationError as exc:
        raise JobFailed(" ".join(m for messages in exc.message_dict.values() for m in messages)) from exc


def reward_train(run: Run, ctx: JobContext) -> dict:
    from rewards.data import RewardDataError, pairs_from_pickapic, split_by_prompt
    from rewards.model import RewardModelError
    from rewards.train import train_reward_model

    config = run.config
    dataset = dataset_of_run(run)
    rows = read_parquet(stored_file_local_path(dataset.file, dataset.sha256), check_images=False)
    rows = rows_of_criterion(rows, dataset.criterion)  # one question's votes: one preference to learn
    pairs = pairs_from_pickapic(rows, both_bad_as_tie=config["both_bad_as_tie"])
    # The run config holds the validated training settings at its top level (absent ones: the defaults).
    settings = {name: config[name] for name in TRAINING_FIELDS if name in config}
    try:
        train_config = RewardTrainConfig.from_dict({**settings, "backbone": resolve_backbone(config["backbone"])})
        splits = split_by_prompt(
            pairs, val_fraction=config["val_fraction"], test_fraction=config["test_fraction"], seed=train_config.seed
        )
        with tempfile.TemporaryDirectory() as folder:
            result = train_reward_model(train_config, splits.train, splits.val, splits.test, ctx, output_dir=folder)
            ctx.save_artifact(MODEL_ARTIFACT, zip_directory(folder), kind="reward_model")
    except (RewardDataError, RewardTrainConfigError, RewardModelError) as exc:
        raise JobFailed(f"Dataset {dataset.name!r}: {exc}") from exc
    metrics = {k: v for k, v in result.items() if k not in ("model_dir", "config")}
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        reward_model = RewardModel.objects.filter(training_run=run).first() or services.reward_model_register(
            name=config.get("name") or f"reward-{run.pk}",
            backbone=config["backbone"],
            dataset=dataset,
            training_run=run,
            artifact=Artifact.objects.get(run=run, name=MODEL_ARTIFACT),
            metrics=metrics,
            created_by=run.created_by,
        )
    return {
        "reward_model": reward_model.pk,
        "dataset": dataset.pk,
        "votes": dataset.rows,
        "train_pairs": result["train_pairs"],
        "val_accuracy": result["val_accuracy"],
        "test_accuracy": result["test_accuracy"],
        "baseline_test_accuracy": result["baseline_test_accuracy"],
        "baseline_val_accuracy": result["baseline_val_accuracy"],
        "human_ceiling": result["human_ceiling"],
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        # The option trained (a head kind, or "none": the CLIP fine-tune) and, for a search, every candidate
        # with its validation (and test) figures and the one kept.
        "head": (result["model"].get("head") or {}).get("config", {}).get("kind", "none"),
        "chosen": result.get("chosen"),
        "candidates": result.get("candidates"),
        "selected_by": result.get("selected_by"),
    }


class _ScaledProgress:
    """A JobContext whose progress reports land in [start, end] of the run's bar."""

    def __init__(self, ctx: JobContext, start: float, end: float) -> None:
        self._ctx, self._start, self._end = ctx, start, end

    def report_progress(self, fraction: float, message: str = "") -> None:
        self._ctx.report_progress(self._start + (self._end - self._start) * fraction, message)

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)


def _summary(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    half = 1.96 * sd / len(values) ** 0.5
    return {"n": len(values), "mean": mean, "std": sd, "ci95": [mean - half, mean + half]}


def evaluate(run: Run, ctx: JobContext) -> dict:
    """Generate what is missing, then score every image of the versions on the prompt set (scores are stored)."""
    from PIL import Image

    config = run.config
    reward_model = RewardModel.objects.get(pk=config["reward_model"])
    settings = SettingsRequest.from_config(config)
    generation = GenerateConfigSerializer(
        data={
            "model_versions": config["model_versions"],
            "prompt_set": config["prompt_set"],
            "images_per_prompt": config["images_per_prompt"],
            "device": config["device"],
            **settings.as_config(),
        }
    )
    if not generation.is_valid():
        raise JobFailed(f"Cannot generate the images to score: {generation.errors}")
    generate_missing_images(dict(generation.validated_data), _ScaledProgress(ctx, 0.0, 0.5), run)
    # The precision the generation step resolved "auto" to: the images just made (or found) are those.
    dtype = resolve_dtype_name(settings.dtype, resolve_device(config["device"]))
    images = images_for(
        config["model_versions"],
        PromptSetItem.objects.filter(prompt_set_id=config["prompt_set"]).values_list("prompt_id", flat=True),
        range(config["images_per_prompt"]),
        settings.with_dtype(dtype),
    )
    scored = set(
        ImageScore.objects.filter(reward_model=reward_model, image_id__in=[i.pk for i in images.values()]).values_list(
            "image_id", flat=True
        )
    )
    todo = sorted((image for image in images.values() if image.pk not in scored), key=lambda image: image.pk)
    try:
        score = reward_function_for(reward_model, device=resolve_device(config["device"]))
    except Exception as exc:
        raise JobFailed(f"Reward model {reward_model.name!r} could not be loaded: {exc}") from exc
    for start in range(0, len(todo), config["batch_size"]):
        batch = todo[start : start + config["batch_size"]]
        pictures = []
        for image in batch:
            with image.file.open("rb") as handle:
                pictures.append(Image.open(handle).convert("RGB"))
        values = score([image.prompt.text for image in batch], pictures)
        services.image_scores_store(
            reward_model=reward_model, scores={i.pk: v for i, v in zip(batch, values, strict=True)}, run=run
        )
        done = start + len(batch)
        ctx.report_progress(0.5 + 0.5 * done / len(todo), f"scored {done} of {len(todo)} images")
    by_version: dict[int, list[float]] = defaultdict(list)
    for version_id, value in ImageScore.objects.filter(
        reward_model=reward_model, image_id__in=[i.pk for i in images.values()]
    ).values_list("image__model_version_id", "score"):
        by_version[version_id].append(value)
    return {
        "reward_model": reward_model.pk,
        "scored_now": len(todo),
        "versions": {str(v): _summary(values) for v, values in by_version.items()},
    }

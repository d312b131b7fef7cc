"""The ``reward_train`` and ``evaluate`` runs: thin adapters between Run rows and the ML code in this package."""

from __future__ import annotations

import statistics
import tempfile
from collections import defaultdict

from core import selectors as core_selectors
from core import services as run_services
from core.devices import resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Artifact, Run
from core.storage import stored_file_local_path, zip_directory
from feedback.models import Campaign
from feedback.pickapic import PickapicRow, read_parquet
from generators.executors import generate_missing_images
from generators.models import PromptSetItem
from generators.pipeline import resolve_dtype_name
from generators.run_configs import GenerateConfigSerializer
from generators.sampler_settings import SettingsRequest
from generators.selectors import images_for
from rewards import services
from rewards.config import RewardTrainConfig, RewardTrainConfigError
from rewards.datasets import rows_of_criterion
from rewards.loading import resolve_backbone
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
            exclude_annotators=config.get("exclude_annotators", ()),
            created_by=run.created_by,
        )
    except services.ValidationError as exc:
        raise JobFailed(" ".join(m for messages in exc.message_dict.values() for m in messages)) from exc


def training_rows(run: Run) -> tuple[PreferenceDataset, list[PickapicRow]]:
    """The run's dataset and the rows it trains on: one question's votes, none by the users in the config's
    ``exclude_annotators`` (a snapshot taken for the run leaves them out already; a dataset snapshotted earlier
    from campaigns has them as ``user_id``, dropped here)."""
    dataset = dataset_of_run(run)
    rows = read_parquet(stored_file_local_path(dataset.file, dataset.sha256), check_images=False)
    rows = rows_of_criterion(rows, dataset.criterion)  # one question's votes: one preference to learn
    excluded = set(run.config.get("exclude_annotators", ()))
    return dataset, [row for row in rows if row.user_id not in excluded]


def excluded_annotators_of(run: Run) -> list[dict]:
    """The annotators the run left out, as ``{id, username}`` (for its result: a username may change later)."""
    ids = sorted(run.config.get("exclude_annotators", ()))
    usernames = core_selectors.usernames_by_id(ids)
    return [{"id": pk, "username": usernames.get(pk, "")} for pk in ids]


def reward_train(run: Run, ctx: JobContext) -> dict:
    from rewards.data import RewardDataError, pairs_from_pickapic, split_by_prompt
    from rewards.model import RewardModelError
    from rewards.train import train_reward_model

    config = run.config
    dataset, rows = training_rows(run)
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
        "excluded_annotators": excluded_annotators_of(run),
        "train_pairs": result["train_pairs"],
        "val_accuracy": result["val_accuracy"],
        "test_accuracy": result["test_accuracy"],
        "baseline_test_accuracy": result["baseline_test_accuracy"],
        "baseline_val_accuracy": result["baseline_val_accuracy"],
        "test_gain": result.get("test_gain"),  # test accuracy above zero-shot, with its interval over test prompts
        "human_ceiling": result["human_ceiling"],
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        # The option trained (a head kind, or "none": the CLIP fine-tune) and, for a search, every candidate
        # with its validation (and test) figures and the one kept.
        "head": (result["model"].get("head") or {}).get("config", {}).get("kind", "none"),
        "chosen": result.get("chosen"),
        "candidates": result.get("candidates"),
        "selected_by": result.get("selected_by"),
        "refit": result.get("refit"),  # a cross-validated search's winner fitted on training + validation
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
    """Generate what is missing, then score every image of the versions on the prompt set with the config's
    reward model (scores are stored) and, with ``metrics``, measure the automatic metrics (``rewards.evaluation``:
    the versions' parents are generated and measured too)."""
    from rewards import evaluation

    config = run.config
    metrics = config.get("metrics") or []
    version_ids = evaluation.with_parents(config["model_versions"]) if metrics else config["model_versions"]
    settings = SettingsRequest.from_config(config)
    generation = GenerateConfigSerializer(
        data={
            "model_versions": version_ids,
            "prompt_set": config["prompt_set"],
            "images_per_prompt": config["images_per_prompt"],
            "device": config["device"],
            **settings.as_config(),
        }
    )
    if not generation.is_valid():
        raise JobFailed(f"Cannot generate the images to score: {generation.errors}")
    generate_missing_images(dict(generation.validated_data), _ScaledProgress(ctx, 0.0, 0.4), run)
    # The precision the generation step resolved "auto" to: the images just made (or found) are those.
    dtype = resolve_dtype_name(settings.dtype, resolve_device(config["device"]))
    images = images_for(
        version_ids,
        PromptSetItem.objects.filter(prompt_set_id=config["prompt_set"]).values_list("prompt_id", flat=True),
        range(config["images_per_prompt"]),
        settings.with_dtype(dtype),
    )
    result: dict = {}
    scorers = [RewardModel.objects.get(pk=config["reward_model"])] if config.get("reward_model") else []
    if "reward_win_rate" in metrics:
        scorers += [m for m in RewardModel.objects.filter(pk__in=config["reward_models"]) if m not in scorers]
    span = 0.2 if metrics else 0.6  # the rest of the bar: the metrics' features
    for k, reward_model in enumerate(scorers):
        low, high = 0.4 + span * k / len(scorers), 0.4 + span * (k + 1) / len(scorers)

        def report(done: int, total: int, low=low, high=high, name=reward_model.name) -> None:
            ctx.report_progress(low + (high - low) * done / total, f"{name}: scored {done} of {total} images")

        scored_now = evaluation.score_missing(
            reward_model,
            images.values(),
            batch_size=config["batch_size"],
            device=config["device"],
            run=run,
            report=report,
        )
        if k == 0 and config.get("reward_model"):
            by_version: dict[int, list[float]] = defaultdict(list)
            for version_id, value in ImageScore.objects.filter(
                reward_model=reward_model, image_id__in=[i.pk for i in images.values()]
            ).values_list("image__model_version_id", "score"):
                by_version[version_id].append(value)
            result.update(
                reward_model=reward_model.pk,
                scored_now=scored_now,
                versions={str(v): _summary(values) for v, values in by_version.items()},
            )
    if metrics:
        result["metrics"] = evaluation.measure(run, ctx, images, version_ids)
    return result

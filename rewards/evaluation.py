"""The automatic metrics of an ``evaluate`` run (``metrics`` in its config), measured on the worker.

Reads the run's images (picked by ``generators.selectors.images_for``), computes CLIP features once per image
content (``rewards.clip_metrics``; the FID InceptionV3's for ``fid_inception``: ``rewards.inception_features``,
its weights from ``INCEPTION_WEIGHTS_PATH``), aggregates with ``rewards.metric_stats`` and stores ``VersionMetric`` rows
through ``rewards.services`` inside the run's fence. A version whose parent was measured in the same run also gets
its win rate against the parent under each reward model, and its per-prompt CLIP score and diversity deltas.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
from django.conf import settings

from core import services as run_services
from core.devices import resolve_device
from core.jobs import JobContext, JobFailed
from core.models import Run
from generators.models import GeneratedImage, ModelVersion
from generators.selectors import ImageKey
from rewards import metric_stats, services
from rewards.loading import resolve_backbone, reward_function_for
from rewards.models import ImageScore, MetricName, ReferenceImage, ReferenceSet, RewardModel

METRICS = ("clip_score", "fid_clip", "fid_inception", "diversity", "reward_win_rate")
FEATURE_METRICS = frozenset({"clip_score", "fid_clip", "diversity"})  # measured on CLIP features


def with_parents(version_ids: Sequence[int]) -> list[int]:
    """The versions, then the parents of those that have one (each once): a win rate or a delta needs both."""
    parents = dict(ModelVersion.objects.filter(pk__in=version_ids).values_list("pk", "parent_id"))
    extra = [parents[v] for v in version_ids if parents.get(v) is not None and parents[v] not in version_ids]
    return [*version_ids, *dict.fromkeys(extra)]


def _open(file) -> object:
    from PIL import Image

    with file.open("rb") as handle:
        return Image.open(handle).convert("RGB")


def score_missing(
    reward_model: RewardModel,
    images: Iterable[GeneratedImage],
    *,
    batch_size: int,
    device: str,
    run: Run,
    report=None,
) -> int:
    """Score (and store) the images ``reward_model`` has not scored yet; returns how many were scored now.
    ``report(done, total)`` is called after each batch."""
    images = list(images)
    scored = set(
        ImageScore.objects.filter(reward_model=reward_model, image_id__in=[i.pk for i in images]).values_list(
            "image_id", flat=True
        )
    )
    todo = sorted((image for image in images if image.pk not in scored), key=lambda image: image.pk)
    if not todo:
        return 0
    try:
        score = reward_function_for(reward_model, device=resolve_device(device))
    except Exception as exc:
        raise JobFailed(f"Reward model {reward_model.name!r} could not be loaded: {exc}") from exc
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        values = score([image.prompt.text for image in batch], [_open(image.file) for image in batch])
        services.image_scores_store(
            reward_model=reward_model, scores={i.pk: v for i, v in zip(batch, values, strict=True)}, run=run
        )
        if report is not None:
            report(start + len(batch), len(todo))
    return len(todo)


class _Features:
    """A model's image features per image content (a collapsed version's identical images are encoded once):
    ``model`` has ``batch_size`` and ``image_features(PIL images) -> N x D``."""

    def __init__(self, model) -> None:
        self.model = model
        self._by_sha: dict[str, np.ndarray] = {}

    @classmethod
    def clip(cls, clip_name: str, device: str) -> _Features:
        from rewards.clip_metrics import ClipFeatureModel

        try:
            return cls(ClipFeatureModel.from_pretrained(resolve_backbone(clip_name), device=resolve_device(device)))
        except (OSError, ValueError) as exc:
            raise JobFailed(f"The CLIP {clip_name!r} could not be loaded: {exc}") from exc

    @classmethod
    def inception(cls, device: str) -> _Features:
        """The FID InceptionV3 from ``INCEPTION_WEIGHTS_PATH`` (loaded once per worker process)."""
        from rewards.inception_features import InceptionUnavailable, load_inception

        try:
            return cls(load_inception(settings.INCEPTION_WEIGHTS_PATH, device=resolve_device(device)))
        except InceptionUnavailable as exc:
            raise JobFailed(f"fid_inception: {exc}") from exc

    def images(self, rows: Sequence[GeneratedImage | ReferenceImage]) -> np.ndarray:
        missing = list({row.sha256: row for row in rows if row.sha256 not in self._by_sha}.values())
        for start in range(0, len(missing), self.model.batch_size):
            batch = missing[start : start + self.model.batch_size]
            for row, vector in zip(batch, self.model.image_features([_open(r.file) for r in batch]), strict=True):
                self._by_sha[row.sha256] = vector
        return np.stack([self._by_sha[row.sha256] for row in rows])


def _row(metric: str, estimate: metric_stats.Estimate, **fields) -> dict:
    return {
        "metric": metric,
        "value": estimate.value,
        "low": estimate.low,
        "high": estimate.high,
        "prompts": estimate.n,
        "items": estimate.items,
        **fields,
    }


def measure(run: Run, ctx: JobContext, images: dict[ImageKey, GeneratedImage], version_ids: Sequence[int]) -> dict:
    """Compute the config's ``metrics`` for every version in ``version_ids`` (the asked ones and their parents),
    store them, and answer them per version (with the flag) for the run's result."""
    try:
        return _measure(run, ctx, images, version_ids)
    except ValueError as exc:  # e.g. a Fréchet distance over fewer than two images
        raise JobFailed(f"The metrics could not be computed: {exc}") from exc


def _measure(run: Run, ctx: JobContext, images: dict[ImageKey, GeneratedImage], version_ids: Sequence[int]) -> dict:
    config = run.config
    asked = set(config["metrics"])
    resamples = config["bootstrap_resamples"]
    by_version: dict[int, dict[int, list[GeneratedImage]]] = defaultdict(lambda: defaultdict(list))
    for (version_id, prompt_id, _seed), image in sorted(images.items()):
        by_version[version_id][prompt_id].append(image)
    parent_of = {
        pk: parent
        for pk, parent in ModelVersion.objects.filter(pk__in=config["model_versions"]).values_list("pk", "parent_id")
        if parent is not None and parent in by_version and pk in by_version
    }
    measured: dict[int, dict] = {v: {} for v in version_ids if v in by_version}
    common = {"prompt_set_id": config["prompt_set"], "images_per_prompt": config["images_per_prompt"]}
    rows: list[dict] = []

    def version_fields(version_id: int) -> dict:
        first = next(iter(by_version[version_id].values()))[0]
        return {**common, "model_version_id": version_id, "settings_hash": first.settings_hash}

    per_prompt: dict[str, dict[int, dict[int, float]]] = {"clip_score": {}, "diversity": {}}
    if asked & FEATURE_METRICS:
        ctx.report_progress(0.6, "computing CLIP features")
        features = _Features.clip(config["clip"], config["device"])
        reference = None
        if "fid_clip" in asked:
            reference_set = ReferenceSet.objects.get(pk=config["reference_set"])
            reference = features.images(list(reference_set.images.all()))
        texts: dict[int, np.ndarray] = {}
        for version_id in measured:
            grouped = by_version[version_id]
            feats = {p: features.images(imgs) for p, imgs in grouped.items()}
            fields = {**version_fields(version_id), "feature_model": config["clip"]}
            if "clip_score" in asked:
                for prompt_id, imgs in grouped.items():
                    if prompt_id not in texts:
                        texts[prompt_id] = features.model.text_features([imgs[0].prompt.text])[0]
                from rewards.clip_metrics import clip_scores

                scores = {
                    p: clip_scores(f, np.repeat(texts[p][None, :], len(f), axis=0)).tolist() for p, f in feats.items()
                }
                per_prompt["clip_score"][version_id] = {p: float(np.mean(s)) for p, s in scores.items()}
                estimate = metric_stats.clip_score_estimate(scores, resamples=resamples)
                rows.append(_row(MetricName.CLIP_SCORE, estimate, **fields))
                measured[version_id]["clip_score"] = estimate.as_dict()
            if "fid_clip" in asked:
                estimate = metric_stats.frechet_estimate(feats, reference, resamples=resamples)
                rows.append(_row(MetricName.FID_CLIP, estimate, reference_set_id=config["reference_set"], **fields))
                measured[version_id]["fid_clip"] = estimate.as_dict()
            if "diversity" in asked:
                per_prompt["diversity"][version_id] = metric_stats.diversity_by_prompt(feats)
                estimate = metric_stats.diversity_estimate(feats, resamples=resamples)
                rows.append(_row(MetricName.DIVERSITY, estimate, **fields))
                measured[version_id]["diversity"] = estimate.as_dict()
        for version_id, parent_id in parent_of.items():
            for metric, delta_name in (
                ("clip_score", MetricName.CLIP_SCORE_DELTA),
                ("diversity", MetricName.DIVERSITY_DELTA),
            ):
                if metric in asked:
                    estimate = metric_stats.paired_delta_estimate(
                        per_prompt[metric][version_id], per_prompt[metric][parent_id], resamples=resamples
                    )
                    fields = {**version_fields(version_id), "feature_model": config["clip"]}
                    rows.append(_row(delta_name, estimate, compared_with_id=parent_id, **fields))
                    measured[version_id][f"{metric}_delta"] = estimate.as_dict()

    if "fid_inception" in asked:
        ctx.report_progress(0.7, "computing Inception features")
        inception = _Features.inception(config["device"])
        reference = inception.images(list(ReferenceSet.objects.get(pk=config["reference_set"]).images.all()))
        weights = os.path.basename(settings.INCEPTION_WEIGHTS_PATH)[:100]
        for version_id in measured:
            feats = {p: inception.images(imgs) for p, imgs in by_version[version_id].items()}
            estimate = metric_stats.frechet_estimate(feats, reference, resamples=resamples)
            fields = {**version_fields(version_id), "feature_model": weights}
            rows.append(_row(MetricName.FID_INCEPTION, estimate, reference_set_id=config["reference_set"], **fields))
            measured[version_id]["fid_inception"] = estimate.as_dict()

    if "reward_win_rate" in asked and parent_of:
        reward_models = RewardModel.objects.filter(pk__in=config["reward_models"]).order_by("name")
        for reward_model in reward_models:
            scores = dict(
                ImageScore.objects.filter(
                    reward_model=reward_model, image_id__in=[i.pk for i in images.values()]
                ).values_list("image_id", "score")
            )
            for version_id, parent_id in parent_of.items():
                pairs: dict[int, list[tuple[float, float]]] = defaultdict(list)
                for (v, prompt_id, seed), image in images.items():
                    theirs = images.get((parent_id, prompt_id, seed))
                    if v == version_id and theirs is not None and image.pk in scores and theirs.pk in scores:
                        pairs[prompt_id].append((scores[image.pk], scores[theirs.pk]))
                if not pairs:
                    continue
                estimate = metric_stats.win_rate_estimate(pairs, resamples=resamples)
                rows.append(
                    _row(
                        MetricName.REWARD_WIN_RATE,
                        estimate,
                        reward_model_id=reward_model.pk,
                        compared_with_id=parent_id,
                        **version_fields(version_id),
                    )
                )
                measured[version_id].setdefault("reward_win_rates", {})[reward_model.name] = estimate.as_dict()

    for version_id, values in measured.items():
        values["parent"] = parent_of.get(version_id)
        values["flag"] = metric_stats.reward_gain_flag(
            values.get("reward_win_rates", {}), values.get("clip_score_delta"), values.get("diversity_delta")
        )
    with run_services.run_fenced(run_id=ctx.run_id, attempt=ctx.attempt):
        services.version_metrics_store(run=run, rows=rows)
    return {str(v): values for v, values in measured.items()}

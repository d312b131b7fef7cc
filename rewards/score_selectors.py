"""Read-only score queries for the review pages: gallery cells with their scores, and a version's reward
distribution on a prompt set against its parent's (mean with a 95% interval, histogram, per-prompt deltas).

Intervals are Student-t intervals of the mean: over images for one version, over prompts for the paired
per-prompt deltas (each prompt's mean score of the version minus its parent's).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from generators.models import GeneratedImage, ModelVersion, Prompt, PromptSet
from generators.sampler_settings import SettingsRequest
from generators.selectors import images_for
from rewards.models import ImageScore, RewardModel

HISTOGRAM_BINS = 12


def reward_models() -> list[RewardModel]:
    """Every reward model, newest first."""
    return list(RewardModel.objects.order_by("-created_at", "-id"))


def default_reward_model() -> RewardModel | None:
    return RewardModel.objects.order_by("-created_at", "-id").first()


# --------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class MeanInterval:
    """A sample's size, mean, standard deviation and two-sided 95% Student-t interval of the mean."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def t_critical(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t critical value with ``df`` degrees of freedom."""
    from scipy.special import stdtrit  # lighter than scipy.stats; imported on use

    return float(stdtrit(df, 0.5 + level / 2))


def mean_interval(values: Sequence[float], level: float = 0.95) -> MeanInterval:
    """Mean with a Student-t interval (no interval below two values)."""
    n = len(values)
    if n == 0:
        return MeanInterval(0, None, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return MeanInterval(1, mean, None, None, None)
    std = statistics.stdev(values)
    half = t_critical(n - 1, level) * std / math.sqrt(n)
    return MeanInterval(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Histogram:
    """Shared bins (``edges`` has one more entry than each count list) so series can be overlaid."""

    edges: list[float]
    counts: list[list[int]]

    @property
    def labels(self) -> list[str]:
        return [f"{a:.3g} – {b:.3g}" for a, b in zip(self.edges, self.edges[1:], strict=False)]


def histogram(series: Sequence[Sequence[float]], bins: int = HISTOGRAM_BINS) -> Histogram:
    """Counts of each series over the same ``bins`` equal-width bins spanning all values."""
    values = [v for s in series for v in s]
    if not values:
        return Histogram(edges=[], counts=[[] for _ in series])
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = [low + k * width for k in range(bins)] + [high]
    counts = []
    for s in series:
        row = [0] * bins
        for v in s:
            row[min(int((v - low) / width), bins - 1)] += 1
        counts.append(row)
    return Histogram(edges=edges, counts=counts)


# --------------------------------------------------------------------------------------------- rewards page
def version_scores(
    reward_model: RewardModel, version: ModelVersion, prompt_set: PromptSet, settings: SettingsRequest
) -> dict[int, list[float]]:
    """``{prompt id: [scores of the version's images of that prompt (any seed) under settings]}`` on the set."""
    images = images_for([version.pk], prompt_set.items.values_list("prompt_id", flat=True), None, settings)
    rows = ImageScore.objects.filter(
        reward_model=reward_model, image_id__in=[image.pk for image in images.values()]
    ).values_list("image__prompt_id", "score")
    by_prompt: dict[int, list[float]] = defaultdict(list)
    for prompt_id, score in rows:
        by_prompt[prompt_id].append(score)
    return dict(by_prompt)


@dataclass
class VersionDistribution:
    version: ModelVersion
    by_prompt: dict[int, list[float]]
    summary: MeanInterval
    prompts_scored: int
    prompts_total: int

    @property
    def complete(self) -> bool:
        return self.prompts_scored == self.prompts_total


@dataclass(frozen=True)
class PromptDelta:
    prompt: Prompt
    version_mean: float
    parent_mean: float
    version_n: int
    parent_n: int

    @property
    def delta(self) -> float:
        return self.version_mean - self.parent_mean


@dataclass
class RewardComparison:
    """A version's (and its parent's) score distribution on a prompt set, and the per-prompt deltas."""

    reward_model: RewardModel
    prompt_set: PromptSet
    settings: SettingsRequest
    version: VersionDistribution
    parent: VersionDistribution | None
    histogram: Histogram
    deltas: list[PromptDelta] = field(default_factory=list)
    delta_summary: MeanInterval = MeanInterval(0, None, None, None, None)

    @property
    def missing_scores(self) -> bool:
        """Some prompt of the set has no scored image of the version (or of its parent)."""
        return not self.version.complete or (self.parent is not None and not self.parent.complete)


def _distribution(
    reward_model: RewardModel,
    version: ModelVersion,
    prompt_set: PromptSet,
    prompts_total: int,
    settings: SettingsRequest,
) -> VersionDistribution:
    by_prompt = version_scores(reward_model, version, prompt_set, settings)
    values = [v for scores in by_prompt.values() for v in scores]
    return VersionDistribution(
        version=version,
        by_prompt=by_prompt,
        summary=mean_interval(values),
        prompts_scored=len(by_prompt),
        prompts_total=prompts_total,
    )


def reward_comparison(
    version: ModelVersion,
    reward_model: RewardModel,
    prompt_set: PromptSet,
    settings: SettingsRequest | None = None,
) -> RewardComparison:
    """Scores of ``version``'s and its parent's images under ``settings`` (default: each one's defaults) on
    ``prompt_set``; deltas over the prompts both have scores for, sorted by delta (largest gain first), with a
    paired interval of the mean delta over prompts."""
    settings = settings or SettingsRequest()
    prompts = {item.prompt_id: item.prompt for item in prompt_set.items.select_related("prompt")}
    mine = _distribution(reward_model, version, prompt_set, len(prompts), settings)
    parent = _distribution(reward_model, version.parent, prompt_set, len(prompts), settings) if version.parent else None
    series = [[v for s in mine.by_prompt.values() for v in s]]
    if parent is not None:
        series.append([v for s in parent.by_prompt.values() for v in s])
    deltas: list[PromptDelta] = []
    if parent is not None:
        for prompt_id in mine.by_prompt.keys() & parent.by_prompt.keys():
            ours, theirs = mine.by_prompt[prompt_id], parent.by_prompt[prompt_id]
            deltas.append(
                PromptDelta(
                    prompt=prompts[prompt_id],
                    version_mean=statistics.fmean(ours),
                    parent_mean=statistics.fmean(theirs),
                    version_n=len(ours),
                    parent_n=len(theirs),
                )
            )
        deltas.sort(key=lambda d: (-d.delta, d.prompt.pk))
    return RewardComparison(
        reward_model=reward_model,
        prompt_set=prompt_set,
        settings=settings,
        version=mine,
        parent=parent,
        histogram=histogram(series),
        deltas=deltas,
        delta_summary=mean_interval([d.delta for d in deltas]),
    )


# --------------------------------------------------------------------------------------------- gallery
@dataclass(frozen=True)
class GalleryCell:
    version: ModelVersion
    seed: int
    image: GeneratedImage | None
    score: float | None = None


@dataclass
class GalleryRow:
    prompt: Prompt
    cells: list[GalleryCell]


@dataclass
class Gallery:
    rows: list[GalleryRow]
    prompts_matching: int
    missing: int
    unscored: int


def gallery(
    *,
    versions: Sequence[ModelVersion],
    prompt_set: PromptSet,
    seeds: int = 1,
    query: str = "",
    tag: str = "",
    reward_model: RewardModel | None = None,
    settings: SettingsRequest | None = None,
    max_rows: int = 100,
) -> Gallery:
    """Rows = the set's prompts (in order, filtered by text and tag), cells = each version × seed 0..n-1.

    A cell holds the image of (version, prompt, seed) under ``settings`` (default: each version's defaults;
    ``generators.selectors.images_for``), or None ("not generated"); ``missing`` and ``unscored`` count over
    every matching prompt, not only those shown.
    """
    items = prompt_set.items.select_related("prompt").order_by("position")
    if query:
        items = items.filter(prompt__text__icontains=query)
    prompts = [item.prompt for item in items]
    if tag:
        prompts = [p for p in prompts if tag in (p.tags or [])]
    images = images_for([v.pk for v in versions], [p.pk for p in prompts], range(seeds), settings or SettingsRequest())
    scores: dict[int, float] = {}
    if reward_model is not None and images:
        scores = dict(
            ImageScore.objects.filter(
                reward_model=reward_model, image_id__in=[i.pk for i in images.values()]
            ).values_list("image_id", "score")
        )
    rows, missing, unscored = [], 0, 0
    for prompt in prompts:
        cells = []
        for version in versions:
            for seed in range(seeds):
                image = images.get((version.pk, prompt.pk, seed))
                score = scores.get(image.pk) if image is not None else None
                missing += image is None
                unscored += image is not None and reward_model is not None and score is None
                cells.append(GalleryCell(version=version, seed=seed, image=image, score=score))
        rows.append(GalleryRow(prompt=prompt, cells=cells))
    return Gallery(rows=rows[:max_rows], prompts_matching=len(prompts), missing=missing, unscored=unscored)


def tags_of(prompt_set: PromptSet) -> list[str]:
    """Every tag used by the set's prompts, sorted."""
    return sorted({tag for tags in prompt_set.prompts.values_list("tags", flat=True) for tag in (tags or [])})

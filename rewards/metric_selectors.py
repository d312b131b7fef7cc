"""Reads of the automatic metrics (``VersionMetric``) and of reference sets, for the pages, the API and the runs.

A version's metrics on a prompt set are the newest row per metric (and per reward model for win rates), whichever
``evaluate`` run measured them; the flag (reward up, diversity or CLIP score down) is read from those rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from generators.models import PromptSet
from rewards.metric_stats import reward_gain_flag
from rewards.models import MetricName, ReferenceSet, VersionMetric


@dataclass(frozen=True)
class MetricValue:
    """One stored measurement: value, 95% bootstrap interval over prompts (None below two prompts), coverage."""

    value: float
    low: float | None
    high: float | None
    prompts: int
    items: int
    run_id: int
    reward_model: str = ""

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "prompts": self.prompts,
            "items": self.items,
            "run": self.run_id,
        }


@dataclass
class VersionMetrics:
    """A version's newest automatic metrics on one prompt set, and its flag ("" when not flagged)."""

    version_id: int
    clip_score: MetricValue | None = None
    fid_clip: MetricValue | None = None
    fid_inception: MetricValue | None = None
    diversity: MetricValue | None = None
    clip_score_delta: MetricValue | None = None
    diversity_delta: MetricValue | None = None
    win_rates: list[MetricValue] = field(default_factory=list)  # one per reward model, by name
    flag: str = ""

    @property
    def flagged(self) -> bool:
        return bool(self.flag)

    def as_dict(self) -> dict:
        def plain(value: MetricValue | None) -> dict | None:
            return value.as_dict() if value is not None else None

        return {
            "model_version": self.version_id,
            "clip_score": plain(self.clip_score),
            "fid_clip": plain(self.fid_clip),
            "fid_inception": plain(self.fid_inception),
            "diversity": plain(self.diversity),
            "clip_score_delta": plain(self.clip_score_delta),
            "diversity_delta": plain(self.diversity_delta),
            "reward_win_rates": {w.reward_model: w.as_dict() for w in self.win_rates},
            "flagged": self.flagged,
            "flag": self.flag,
        }


def version_metrics(version_ids: Iterable[int], prompt_set: PromptSet | int | None) -> dict[int, VersionMetrics]:
    """``{version id: its newest metrics on prompt_set}`` for the versions that have any (one query)."""
    ids = list(version_ids)
    if prompt_set is None or not ids:
        return {}
    rows = (
        VersionMetric.objects.filter(model_version_id__in=ids, prompt_set=prompt_set)
        .select_related("reward_model")
        .order_by("-id")
    )
    found: dict[int, VersionMetrics] = {}
    seen: set[tuple[int, str, int | None]] = set()
    for row in rows:
        key = (row.model_version_id, row.metric, row.reward_model_id)
        if key in seen:
            continue
        seen.add(key)
        metrics = found.setdefault(row.model_version_id, VersionMetrics(row.model_version_id))
        value = MetricValue(
            row.value,
            row.low,
            row.high,
            row.prompts,
            row.items,
            row.run_id,
            row.reward_model.name if row.reward_model is not None else "",
        )
        if row.metric == MetricName.REWARD_WIN_RATE:
            metrics.win_rates.append(value)
        else:
            setattr(metrics, row.metric, value)
    for metrics in found.values():
        metrics.win_rates.sort(key=lambda w: w.reward_model)
        metrics.flag = reward_gain_flag(
            {w.reward_model: w.as_dict() for w in metrics.win_rates},
            metrics.clip_score_delta.as_dict() if metrics.clip_score_delta else None,
            metrics.diversity_delta.as_dict() if metrics.diversity_delta else None,
        )
    return found


def reference_sets() -> list[ReferenceSet]:
    return list(ReferenceSet.objects.select_related("prompt_set").order_by("prompt_set__name", "-created_at", "-id"))


def newest_reference_set(prompt_set: PromptSet | int) -> ReferenceSet | None:
    """The reference set registered last for ``prompt_set`` (what an ``evaluate`` run uses unless told)."""
    return ReferenceSet.objects.filter(prompt_set=prompt_set).order_by("-created_at", "-id").first()

"""Review pages: versions and their lineage, the side-by-side gallery, a version's reward scores.

Read-only: they render selectors (``generators.lineage``, ``rewards.score_selectors``); generating and scoring
images go through ``POST /api/v1/runs/`` from the pages' scripts.
"""

from __future__ import annotations

import json

from django.conf import settings as django_settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render

from core.ids import MAX_ID
from core.roles import Role
from feedback.models import Campaign
from frontend.access import role_required
from generators import lineage
from generators.models import ModelVersion, PromptSet
from generators.pipeline import DTYPES, SCHEDULERS
from generators.run_configs import SamplerSettingsSerializer
from generators.sampler_settings import SETTING_KEYS, SettingsRequest
from rewards import metric_selectors, score_selectors
from rewards.models import RewardModel

GALLERY_MIN_VERSIONS, GALLERY_MAX_VERSIONS = 2, 4
MAX_SEEDS = 8
staff_only = role_required(Role.ENGINEER, Role.REVIEWER)


def _int_or_none(value: str | None) -> int | None:
    """An id from a query parameter, or None when it is absent, not an integer or beyond 64 bits."""
    try:
        number = int(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and 1 <= number <= MAX_ID else None


def _ids(request: HttpRequest, name: str) -> list[int]:
    """Ids from repeated (``?versions=1&versions=2``) or comma-separated (``?versions=1,2``) parameters."""
    ids: list[int] = []
    for raw in request.GET.getlist(name):
        for part in raw.split(","):
            value = _int_or_none(part.strip())
            if value is not None and value not in ids:
                ids.append(value)
    return ids


def _chosen(request: HttpRequest, name: str, model, default):
    """The row named by ``?name=ID`` (404 if unknown), else ``default``."""
    pk = _int_or_none(request.GET.get(name))
    return get_object_or_404(model, pk=pk) if pk is not None else default


class BadSettings(ValueError):
    """A sampler setting in the query string is invalid; the message names it."""


def _settings(request: HttpRequest, base: dict | None = None) -> SettingsRequest:
    """Sampler settings from the query string (``?steps=50&dtype=fp32``) over ``base`` (e.g. a campaign's);
    absent: each version's default."""
    given = {key: request.GET[key] for key in (*SETTING_KEYS, "dtype") if request.GET.get(key, "").strip()}
    data = SamplerSettingsSerializer(data={**(base or {}), **given})
    if not data.is_valid():
        raise BadSettings("; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in data.errors.items()))
    return SettingsRequest.from_config(data.validated_data)


@staff_only
def version_list(request: HttpRequest) -> HttpResponse:
    """Every model version grouped by base model, as lineage trees, with their automatic metrics on a prompt set
    (``?prompt_set=ID``, default the default eval set) and the reward-gain flag."""
    trees = lineage.lineage_tree()
    prompt_set = _chosen(request, "prompt_set", PromptSet, lineage.default_eval_prompt_set())
    ids = [info.version.pk for tree in trees for info in tree.versions]
    metrics = metric_selectors.version_metrics(ids, prompt_set)
    rows = [(tree, [(info, metrics.get(info.version.pk)) for info in tree.versions]) for tree in trees]
    return render(
        request,
        "frontend/review/version_list.html",
        {
            "rows": rows,
            "prompt_set": prompt_set,
            "prompt_sets": PromptSet.objects.order_by("name"),
            "flagged": sum(m.flagged for m in metrics.values()),
        },
    )


@staff_only
def version_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One version: what made it, its ancestry and children, the fine-tune's before/after figures."""
    version = get_object_or_404(ModelVersion, pk=pk)
    info = lineage.version_info(version)
    summary = info.finetune.summary if info.finetune is not None else {}
    return render(
        request,
        "frontend/review/version_detail.html",
        {
            "info": info,
            "version": info.version,
            "ancestry": lineage.ancestry(info.version),
            "children": lineage.children_of(info.version),
            "grid": lineage.eval_grid_artifact(info.version),
            "summary": summary,
            "reward_change": _change(summary, "eval_reward"),
            "gold_change": _change(summary, "eval_gold_reward"),
        },
    )


def _measurable(prompt_set: PromptSet) -> list[str]:
    """The automatic metrics an ``evaluate`` run can measure on ``prompt_set`` now: Fréchet distance needs a
    registered reference set (and Inception FID its weights, ``INCEPTION_WEIGHTS_PATH``), win rates a reward
    model."""
    names = ["clip_score", "diversity"]
    if metric_selectors.newest_reference_set(prompt_set) is not None:
        names[1:1] = ["fid_clip", "fid_inception"] if django_settings.INCEPTION_WEIGHTS_PATH else ["fid_clip"]
    if RewardModel.objects.exists():
        names.append("reward_win_rate")
    return names


def _change(summary: dict, key: str) -> float | None:
    before, after = summary.get(f"{key}_before"), summary.get(f"{key}_after")
    return after - before if isinstance(before, int | float) and isinstance(after, int | float) else None


@staff_only
def version_grid(request: HttpRequest, pk: int) -> FileResponse:
    """The ``eval_grid.png`` artifact of the fine-tune run that made the version."""
    artifact = lineage.eval_grid_artifact(get_object_or_404(ModelVersion, pk=pk))
    if artifact is None:
        raise Http404("This version has no evaluation grid.")
    response = FileResponse(artifact.file.open("rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=86400"
    return response


@staff_only
def gallery(request: HttpRequest) -> HttpResponse:
    """The same prompts and seeds across 2–4 versions under the same sampler settings; optional per-image reward
    scores. ``?campaign=ID`` starts from a campaign's versions, prompt set, seeds and settings (its images)."""
    campaign = _chosen(request, "campaign", Campaign, None)
    chosen_ids = _ids(request, "versions")
    if campaign is not None and not chosen_ids:
        chosen_ids = list(campaign.model_versions.order_by("pk").values_list("pk", flat=True))
    by_id = ModelVersion.objects.select_related("base_model").in_bulk(chosen_ids)
    chosen = [by_id[pk] for pk in chosen_ids if pk in by_id]
    default_set = campaign.prompt_set if campaign is not None else lineage.default_eval_prompt_set()
    prompt_set = _chosen(request, "prompt_set", PromptSet, default_set)
    reward_model = _chosen(request, "reward_model", RewardModel, None)
    default_seeds = campaign.images_per_prompt if campaign is not None else 1
    seeds = min(max(_int_or_none(request.GET.get("images_per_prompt")) or default_seeds, 1), MAX_SEEDS)
    query, tag = request.GET.get("q", "").strip(), request.GET.get("tag", "").strip()
    try:
        settings = _settings(request, campaign.sampler_settings if campaign is not None else None)
    except BadSettings as exc:
        return HttpResponseBadRequest(f"Invalid sampler settings: {exc}", content_type="text/plain")
    ready = prompt_set is not None and GALLERY_MIN_VERSIONS <= len(chosen) <= GALLERY_MAX_VERSIONS
    version_metrics = metric_selectors.version_metrics([v.pk for v in chosen], prompt_set)
    grid = None
    run_config: dict = {}
    if ready:
        grid = score_selectors.gallery(
            versions=chosen,
            prompt_set=prompt_set,
            seeds=seeds,
            query=query,
            tag=tag,
            reward_model=reward_model,
            settings=settings,
        )
        run_config = {
            "model_versions": [v.pk for v in chosen],
            "prompt_set": prompt_set.pk,
            "images_per_prompt": seeds,
            **settings.as_config(),
        }
    return render(
        request,
        "frontend/review/gallery.html",
        {
            "all_versions": ModelVersion.objects.select_related("base_model").order_by("base_model__name", "id"),
            "chosen": chosen,
            "chosen_ids": [v.pk for v in chosen],
            "prompt_sets": PromptSet.objects.order_by("name"),
            "prompt_set": prompt_set,
            "tags": score_selectors.tags_of(prompt_set) if prompt_set is not None else [],
            "reward_models": score_selectors.reward_models(),
            "reward_model": reward_model,
            "seeds": seeds,
            "seed_range": range(seeds),
            "max_seeds": MAX_SEEDS,
            "query": query,
            "tag": tag,
            "ready": ready,
            "too_many": len(chosen) > GALLERY_MAX_VERSIONS,
            "min_versions": GALLERY_MIN_VERSIONS,
            "max_versions": GALLERY_MAX_VERSIONS,
            "grid": grid,
            "columns": len(chosen) * seeds + 1,
            "campaign": campaign,
            "settings": settings,
            "schedulers": sorted(SCHEDULERS),
            "dtypes": DTYPES,
            "generate_config": json.dumps(run_config),
            "evaluate_config": json.dumps({"reward_model": reward_model.pk, **run_config}) if reward_model else "",
            "metrics_config": json.dumps(
                {**run_config, "images_per_prompt": max(seeds, 2), "metrics": _measurable(prompt_set)}
            )
            if ready
            else "",
            "metrics": [(v, version_metrics.get(v.pk)) for v in chosen],
        },
    )


@staff_only
def version_rewards(request: HttpRequest, pk: int) -> HttpResponse:
    """A version's reward-model score distribution on a prompt set, its parent's, and per-prompt deltas."""
    version = get_object_or_404(ModelVersion.objects.select_related("base_model", "parent__base_model"), pk=pk)
    reward_model = _chosen(request, "reward_model", RewardModel, score_selectors.default_reward_model())
    prompt_set = _chosen(request, "prompt_set", PromptSet, lineage.default_eval_prompt_set())
    try:
        settings = _settings(request)
    except BadSettings as exc:
        return HttpResponseBadRequest(f"Invalid sampler settings: {exc}", content_type="text/plain")
    comparison = None
    if reward_model is not None and prompt_set is not None:
        comparison = score_selectors.reward_comparison(version, reward_model, prompt_set, settings)
    return render(
        request,
        "frontend/review/version_rewards.html",
        {
            "version": version,
            "reward_models": score_selectors.reward_models(),
            "reward_model": reward_model,
            "prompt_sets": PromptSet.objects.order_by("name"),
            "prompt_set": prompt_set,
            "comparison": comparison,
            "settings": settings,
            "evaluate_config": json.dumps(
                {
                    "reward_model": reward_model.pk if reward_model else None,
                    "model_versions": [v.pk for v in (version, version.parent) if v is not None],
                    "prompt_set": prompt_set.pk if prompt_set else None,
                    **settings.as_config(),
                }
            ),
            "chart": _chart_data(comparison) if comparison is not None else None,
            "histogram_rows": _histogram_rows(comparison) if comparison is not None else [],
        },
    )


def _chart_data(comparison: score_selectors.RewardComparison) -> dict:
    """The histogram as plain JSON for Chart.js."""
    names = [str(comparison.version.version)]
    if comparison.parent is not None:
        names.append(f"{comparison.parent.version} (parent)")
    return {
        "labels": comparison.histogram.labels,
        "datasets": [
            {"label": name, "data": counts} for name, counts in zip(names, comparison.histogram.counts, strict=True)
        ],
    }


def _histogram_rows(comparison: score_selectors.RewardComparison) -> list[tuple[str, list[int]]]:
    """(bin label, count per series) rows: the histogram as a table."""
    histogram = comparison.histogram
    return [(label, [counts[k] for counts in histogram.counts]) for k, label in enumerate(histogram.labels)]

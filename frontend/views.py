"""Pages. They render templates and read through selectors; data changes go through the REST API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from core import run_kinds, selectors
from core.metrics_csv import parse_run_ids
from core.models import RunKindName
from core.permissions import REVIEWER_CAMPAIGN_PURPOSES, may_create_campaign, may_start_run
from core.roles import Role, has_role
from core.run_states import LIVE_STATES, RunState
from feedback import selectors as feedback_selectors
from feedback.models import CampaignStatus, Purpose
from feedback.outlook import rating_outlook, stalled_pairs
from frontend.access import role_required
from frontend.interval_plot import interval_plot
from generators import selectors as generator_selectors
from rewards import metric_selectors


@login_required
def home(request):
    """Send each role to its start page."""
    if has_role(request.user, Role.ENGINEER):
        return redirect("runs")
    if has_role(request.user, Role.REVIEWER):
        return redirect("campaigns")
    campaigns = feedback_selectors.with_progress(feedback_selectors.campaigns_for(request.user), request.user)
    rows = [
        (c, feedback_selectors.campaign_progress(c, request.user), rating_outlook(c, request.user)) for c in campaigns
    ]
    not_open = feedback_selectors.assigned_not_open(request.user)
    return render(request, "frontend/annotator_home.html", {"campaigns": rows, "not_open": not_open})


@role_required(Role.ANNOTATOR, Role.REVIEWER)
def annotate(request, pk: int):
    """The rating page: two images, keyboard first; everything after load goes through the REST API."""
    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user).filter(annotators=request.user), pk=pk)
    return render(request, "frontend/annotate.html", {"campaign": campaign})


@role_required(Role.ENGINEER, Role.REVIEWER)
def run_compare(request):
    """Several runs' metric curves overlaid (``?runs=3,7,9`` or ``?run=3&run=7``), with their CSV."""
    text = ",".join([*request.GET.getlist("run"), request.GET.get("runs", "")])
    error, runs = "", []
    try:
        ids = parse_run_ids(text)
    except ValidationError as exc:
        ids, error = [], " ".join(exc.detail["runs"])
    if ids:
        found = {run.pk: run for run in selectors.runs_visible_to(request.user).filter(pk__in=ids)}
        runs = [found[pk] for pk in ids if pk in found]
        missing = [str(pk) for pk in ids if pk not in found]
        if missing:
            error = f"No run {', '.join(missing)}."
    return render(
        request,
        "frontend/run_compare.html",
        {"runs": runs, "error": error, "ids": ",".join(str(run.pk) for run in runs)},
        status=400 if error and not runs else 200,
    )


@role_required(Role.ENGINEER, Role.REVIEWER)
def run_list(request):
    runs = selectors.runs_visible_to(request.user)
    kind, state = request.GET.get("kind", ""), request.GET.get("state", "")
    if kind in RunKindName.values:
        runs = runs.filter(kind=kind)
    if state in RunState.values:
        runs = runs.filter(state=state)
    runs = list(runs[:200])
    return render(
        request,
        "frontend/run_list.html",
        {
            "runs": runs,
            "now": timezone.now(),
            "kinds": RunKindName.values,
            "states": RunState.values,
            "selected_kind": kind,
            "selected_state": state,
            "any_live": any(run.state in LIVE_STATES for run in runs),
            "startable_kinds": [k.name for k in run_kinds.available()],
        },
    )


@role_required(Role.ENGINEER, Role.REVIEWER)
def run_detail(request, pk: int):
    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    can_rerun = may_start_run(request.user, run.kind) and run.kind in {k.name for k in run_kinds.available()}
    context = {
        "run": run,
        "is_live": run.state in LIVE_STATES,
        "can_rerun": can_rerun,
        "reward_gain": _reward_gain(run),
    }
    return render(request, "frontend/run_detail.html", context)


def _reward_gain(run) -> dict | None:
    """A reward_train run's held-out test figures for its page: its accuracy, zero-shot CLIP's, and the gain in
    points with its 95% interval over the test prompts (the result's ``test_gain``); None for other runs."""
    result = run.result if isinstance(run.result, dict) else {}
    gain = result.get("test_gain") if run.kind == "reward_train" else None
    if not isinstance(gain, dict) or gain.get("value") is None:
        return None
    low, high = gain.get("low"), gain.get("high")
    return {
        "accuracy": result.get("test_accuracy"),
        "zero_shot": result.get("baseline_test_accuracy"),
        "points": 100 * gain["value"],
        "low": None if low is None else 100 * low,
        "high": None if high is None else 100 * high,
        "prompts": gain.get("prompts"),
        "pairs": gain.get("items"),
    }


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_list(request):
    campaigns = feedback_selectors.campaigns_for(request.user).select_related("preparing_run")
    campaigns = feedback_selectors.with_progress(campaigns, request.user)
    rows = [(c, feedback_selectors.campaign_progress(c, request.user)) for c in campaigns[:200]]
    ratable = set(feedback_selectors.campaigns_to_rate(request.user).values_list("pk", flat=True))
    return render(
        request,
        "frontend/campaign_list.html",
        {"campaigns": rows, "ratable": ratable, "can_create": may_create_campaign(request.user)},
    )


CAMPAIGN_IMAGE_FIELDS = ("images_per_prompt", "sampler_settings")


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_new(request):
    """``/campaigns/new/``: the create form, built by ``run_form.js`` from the specs of the API's own serializer
    (``POST /api/v1/campaigns/``), with a preview of its pairs (``POST /api/v1/campaigns/preview/``). Reviewers
    are offered the purposes they may create (arena), the same rule as the API's."""
    from core import form_schema
    from feedback.api import CampaignCreateSerializer

    specs = form_schema.with_id_choices(form_schema.describe_serializer(CampaignCreateSerializer), request.user)
    arena_only = not has_role(request.user, Role.ENGINEER)
    for spec in specs:  # the images' settings: a collapsed section (the versions' defaults unless set)
        if spec["name"] in CAMPAIGN_IMAGE_FIELDS:
            spec["group"] = "Images: how many per prompt, sampler settings"
        if spec["name"] == "purpose" and arena_only:
            spec["choices"] = [c for c in spec["choices"] if c["value"] in REVIEWER_CAMPAIGN_PURPOSES]
            spec["default"] = Purpose.ARENA.value
    return render(request, "frontend/campaign_form.html", {"specs": specs, "arena_only": arena_only})


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_detail(request, pk: int):
    """Progress, votes over time, the learning curve (collect campaigns) and the annotator quality table."""
    from rewards import selectors as reward_selectors

    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user).select_related("preparing_run"), pk=pk)
    quality = feedback_selectors.campaign_quality(campaign)
    curve = reward_selectors.campaign_learning_curve(campaign) if campaign.purpose == Purpose.COLLECT else None
    return render(
        request,
        "frontend/campaign_detail.html",
        {
            "campaign": campaign,
            "versions": campaign.model_versions.select_related("base_model"),
            "progress": feedback_selectors.campaign_progress(campaign, request.user),
            "quality": quality,
            "activity": feedback_selectors.votes_over_time(campaign),
            "curve": curve,
            "stalled": stalled_pairs(campaign) if campaign.status == CampaignStatus.OPEN else 0,
            "can_manage": has_role(request.user, Role.ENGINEER),
        },
    )


@role_required(Role.ENGINEER, Role.REVIEWER)
def leaderboard(request, pk: int):
    """An arena campaign's ratings with intervals, the win-rate matrix, verdicts, and promotion."""
    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user), pk=pk)
    if campaign.purpose != Purpose.ARENA:
        raise Http404(f"Campaign {campaign.pk} is a {campaign.purpose} campaign: leaderboards rank arena campaigns.")
    board = feedback_selectors.campaign_leaderboard(campaign)
    plot = None
    if board["models"]:
        plot = interval_plot([(m["name"], m["rating"], *m["rating_interval"]) for m in board["models"]])
    matrix = None
    if board["matrix"]:
        names = board["matrix"]["names"]
        matrix = [
            (name, list(zip(names, board["matrix"]["win_rate"][i], board["matrix"]["total"][i], strict=True)))
            for i, name in enumerate(names)
        ]
    champion = generator_selectors.aliases().filter(name="champion").first()
    measured = metric_selectors.version_metrics([m["model"] for m in board["models"]], campaign.prompt_set_id)
    rows = [
        {**m, "is_champion": bool(champion) and champion.version_id == m["model"], "metrics": measured.get(m["model"])}
        for m in board["models"]
    ]
    return render(
        request,
        "frontend/leaderboard.html",
        {
            "campaign": campaign,
            "board": board,
            "rows": rows,
            "plot": plot,
            "matrix": matrix,
            "champion": champion,
            "flagged": [row for row in rows if row["metrics"] and row["metrics"].flagged],
        },
    )


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_audit(request, pk: int):
    """Reward-hacking audit: pairs where the reward model strongly prefers the image people rejected."""
    from rewards import audit, score_selectors

    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user), pk=pk)
    reward_models = score_selectors.reward_models()
    chosen = next((m for m in reward_models if str(m.pk) == request.GET.get("reward_model")), None)
    chosen = chosen or (reward_models[0] if reward_models else None)
    try:
        margin = min(max(float(request.GET.get("margin", 0.8)), 0.5), 1.0)
    except ValueError:
        margin = 0.8
    result = audit.reward_hacking_audit(campaign, chosen, margin=margin) if chosen else None
    evaluate_config = {
        "reward_model": chosen.pk if chosen else None,
        "model_versions": list(campaign.model_versions.values_list("pk", flat=True)),
        "prompt_set": campaign.prompt_set_id,
        "images_per_prompt": campaign.images_per_prompt,
        **campaign.sampler_settings,
    }
    return render(
        request,
        "frontend/campaign_audit.html",
        {
            "campaign": campaign,
            "reward_models": reward_models,
            "chosen": chosen,
            "margin": margin,
            "audit": result,
            "evaluate_config": evaluate_config,
            "can_make_campaign": has_role(request.user, Role.ENGINEER),  # the API admits engineers only
        },
    )

"""Pages. They render templates and read through selectors; data changes go through the REST API."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone

from core import run_kinds, selectors
from core.models import RunKindName
from core.roles import Role, has_role
from core.run_states import LIVE_STATES, RunState
from feedback import selectors as feedback_selectors
from frontend.access import role_required


@login_required
def home(request):
    """Send each role to its start page."""
    if has_role(request.user, Role.ENGINEER, Role.REVIEWER):
        return redirect("runs")
    campaigns = feedback_selectors.campaigns_for(request.user)
    rows = [(c, feedback_selectors.campaign_progress(c, request.user)) for c in campaigns]
    return render(request, "frontend/annotator_home.html", {"campaigns": rows})


@role_required(Role.ANNOTATOR)
def annotate(request, pk: int):
    """The rating page: two images, keyboard first; everything after load goes through the REST API."""
    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user).filter(annotators=request.user), pk=pk)
    return render(request, "frontend/annotate.html", {"campaign": campaign})


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
    return render(request, "frontend/run_detail.html", {"run": run, "is_live": run.state in LIVE_STATES})


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_list(request):
    campaigns = feedback_selectors.campaigns_for(request.user).select_related("preparing_run")
    rows = [(c, feedback_selectors.campaign_progress(c, request.user)) for c in campaigns[:200]]
    return render(request, "frontend/campaign_list.html", {"campaigns": rows})


@role_required(Role.ENGINEER, Role.REVIEWER)
def campaign_detail(request, pk: int):
    """Progress, votes over time and the annotator quality table of one campaign."""
    campaign = get_object_or_404(feedback_selectors.campaigns_for(request.user).select_related("preparing_run"), pk=pk)
    quality = feedback_selectors.campaign_quality(campaign)
    return render(
        request,
        "frontend/campaign_detail.html",
        {
            "campaign": campaign,
            "versions": campaign.model_versions.select_related("base_model"),
            "progress": feedback_selectors.campaign_progress(campaign, request.user),
            "quality": quality,
            "activity": feedback_selectors.votes_over_time(campaign),
        },
    )

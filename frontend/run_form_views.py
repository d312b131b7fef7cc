"""The run form: start a run of any kind the user may start, from a form the browser builds from the kind's
config serializer (``GET /api/v1/run-kinds/``: ``form``, ``presets``) and posts to ``POST /api/v1/runs/``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from core import run_kinds, selectors
from core.ids import MAX_ID
from core.permissions import may_start_run
from core.roles import Role
from frontend.access import role_required


def _from_run_id(request) -> int | None:
    text = request.GET.get("from", "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ID:
        raise Http404(f"No run {text!r}.")
    return int(text)


@role_required(Role.ENGINEER, Role.REVIEWER)
def run_new(request, kind: str | None = None):
    """``/runs/new/``: the kinds the user may start; ``/runs/new/<kind>/``: that kind's form, prefilled from run
    ``?from=<id>`` ("run again with changes") when given."""
    startable = [k for k in run_kinds.available() if may_start_run(request.user, k.name)]
    chosen = None
    if kind is not None:
        try:
            chosen = run_kinds.get(kind)
        except run_kinds.UnknownRunKind as exc:
            raise Http404(str(exc)) from None
        if not may_start_run(request.user, kind):
            raise PermissionDenied("Reviewers may start only generate and evaluate runs.")
    from_run = None
    from_id = _from_run_id(request)
    if from_id is not None:
        from_run = get_object_or_404(selectors.runs_visible_to(request.user), pk=from_id)
        if chosen is None or from_run.kind != chosen.name:
            return redirect(f"{reverse('run-new-kind', args=[from_run.kind])}?from={from_run.pk}")
    return render(request, "frontend/run_form.html", {"kinds": startable, "kind": chosen, "from_run": from_run})

"""The run form's page: which kinds each role is offered, "run again with changes" links, bad addresses."""

from __future__ import annotations

import re

import pytest

from core import run_kinds, services
from core.models import Run

pytestmark = pytest.mark.django_db


def _get(client, user, url: str):
    client.force_login(user)
    return client.get(url)


def _offered(page: str) -> list[str]:
    return re.findall(r'href="/runs/new/([a-z_]+)/"', page)


def test_engineers_are_offered_every_kind_and_reviewers_generate_and_evaluate(client, users):
    engineer = _get(client, users["engineer"], "/runs/new/").content.decode()
    assert _offered(engineer) == [k.name for k in run_kinds.available()]
    reviewer = _get(client, users["reviewer"], "/runs/new/").content.decode()
    assert _offered(reviewer) == ["evaluate", "generate"]


def test_a_kind_page_loads_the_form_script_for_that_kind(client, users):
    page = _get(client, users["engineer"], "/runs/new/finetune/").content.decode()
    assert 'data-kind="finetune"' in page and "frontend/run_form.js" in page
    assert 'kind: "finetune"' in page and "fromRunUrl: null" in page


def test_unknown_kinds_and_runs_are_404(client, users):
    assert _get(client, users["engineer"], "/runs/new/nope/").status_code == 404
    assert _get(client, users["engineer"], "/runs/new/diagnostic/?from=abc").status_code == 404
    assert _get(client, users["engineer"], "/runs/new/diagnostic/?from=99999999999999999999").status_code == 404
    assert _get(client, users["engineer"], "/runs/new/diagnostic/?from=999").status_code == 404


def test_run_again_goes_to_the_runs_own_kind_with_its_config(client, users):
    run = services.run_create(kind="diagnostic", config={"steps": 3}, created_by=users["engineer"])
    response = _get(client, users["engineer"], f"/runs/new/generate/?from={run.pk}")
    assert (response.status_code, response["Location"]) == (302, f"/runs/new/diagnostic/?from={run.pk}")
    page = _get(client, users["engineer"], f"/runs/new/diagnostic/?from={run.pk}").content.decode()
    assert f'fromRunUrl: "/api/v1/runs/{run.pk}/"' in page and f"run #{run.pk}" in page


def test_run_pages_link_run_again_only_for_kinds_the_user_may_start(client, users):
    diagnostic = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    generate = Run.objects.create(kind="generate", config={"prompt_set": 1}, queue="gpu")
    link = 'id="run-again" href="/runs/new/{kind}/?from={pk}"'

    engineer = _get(client, users["engineer"], f"/runs/{diagnostic.pk}/").content.decode()
    assert link.format(kind="diagnostic", pk=diagnostic.pk) in engineer
    reviewer = _get(client, users["reviewer"], f"/runs/{diagnostic.pk}/").content.decode()
    assert 'id="run-again"' not in reviewer
    reviewer = _get(client, users["reviewer"], f"/runs/{generate.pk}/").content.decode()
    assert link.format(kind="generate", pk=generate.pk) in reviewer


def test_the_runs_page_links_the_form(client, users):
    for role in ("engineer", "reviewer"):
        assert 'id="new-run" href="/runs/new/"' in _get(client, users[role], "/runs/").content.decode()


def test_a_reward_train_run_page_shows_its_gain_over_zero_shot_with_the_interval(client, users):
    gain = {"value": 0.227, "low": 0.182, "high": 0.277, "prompts": 11, "items": 132}
    result = {"test_accuracy": 0.773, "baseline_test_accuracy": 0.545, "test_gain": gain}
    run = Run.objects.create(kind="reward_train", config={}, queue="gpu", state="succeeded", result=result)
    page = _get(client, users["reviewer"], f"/runs/{run.pk}/").content.decode()
    shown = re.sub(r"\s+", " ", page[page.index('id="reward-gain"') :].split("</p>")[0])
    assert "accuracy 0.773 against zero-shot CLIP's 0.545" in shown and "+22.7 points" in shown
    assert "(95% interval +18.2 to +27.7 over 11 test prompts, 132 pairs)" in shown
    # Without an interval (one test prompt) the figure stands alone; other runs and older results show nothing.
    run.result = {**result, "test_gain": {**gain, "low": None, "high": None, "prompts": 1}}
    run.save(update_fields=["result"])
    shown = _get(client, users["reviewer"], f"/runs/{run.pk}/").content.decode()
    assert "+22.7 points" in shown and "95% interval" not in shown
    for kind, stored in (("reward_train", {"test_accuracy": 0.7}), ("diagnostic", result)):
        other = Run.objects.create(kind=kind, config={}, queue="gpu", state="succeeded", result=stored)
        assert 'id="reward-gain"' not in _get(client, users["engineer"], f"/runs/{other.pk}/").content.decode()

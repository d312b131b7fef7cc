"""Every run kind from the browser (issue 18, item 2): the form built from the kind's serializer shows, beside the
field, the very message POST /api/v1/runs/ answers for the same config (a test per kind an engineer may start);
an engineer starts a generate run on the sandbox from a preset and runs it again with changes; a reviewer is
offered generate and evaluate only."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect
from rest_framework.test import APIClient

from core import run_kinds
from core.models import Run
from core.permissions import REVIEWER_RUN_KINDS
from feedback import services as feedback_services
from generators.models import ModelVersion, PromptSet
from rewards import services as reward_services
from rewards.models import PreferenceDataset

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
RUNS_API = "/api/v1/runs/"


@pytest.fixture
def world(users, settings, tmp_path):
    """The sandbox's rows, a reward model, a collect campaign and a ready dataset: something to choose per field."""
    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    base = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    eval_set = PromptSet.objects.get(name="sandbox-eval")
    campaign = feedback_services.campaign_create(
        name="collect-for-forms",
        purpose="collect",
        prompt_set=eval_set,
        model_versions=[base],
        annotators=[users["annotator"]],
    )
    dataset = PreferenceDataset.objects.create(
        name="votes", source="campaigns", file="datasets/votes.parquet", sha256="0" * 64, size=0, rows=0
    )
    reward_model = reward_services.reward_model_register(name="zero-shot", backbone="sandbox")
    return {"base": base, "campaign": campaign, "dataset": dataset, "reward_model": reward_model}


def _open_form(page, live_server, kind: str, query: str = "") -> None:
    page.goto(f"{live_server.url}/runs/new/{kind}/{query}")
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "true")


def _open_groups(page) -> None:
    for summary in page.locator("details.group > summary").all():
        summary.click()


def _submit(page) -> dict:
    """Click Start; the JSON body the form posted."""
    with page.expect_request(lambda r: r.url.endswith(RUNS_API) and r.method == "POST") as request:
        page.get_by_role("button", name="Start").click()
    return request.value.post_data_json


# Per kind: how to fill the required fields validly, then the one invalid value (field, text typed).
def _diagnostic(page, world):
    return "steps", "0"


def _generate(page, world):
    page.get_by_role("button", name="quick sandbox").click()
    return "images_per_prompt", "300"


def _evaluate(page, world):
    page.get_by_role("button", name="quick sandbox").click()
    return "batch_size", "0"


def _reward_train(page, world):
    page.locator("#field-campaigns").select_option(str(world["campaign"].pk))
    _open_groups(page)
    return "lr", "2"


def _finetune(page, world):
    page.get_by_role("button", name="quick sandbox").click()
    _open_groups(page)
    return "epochs", "0"


def _preference_tune(page, world):
    page.get_by_role("button", name="quick sandbox").click()
    page.locator("#field-dataset").select_option(str(world["dataset"].pk))
    _open_groups(page)
    return "beta", "0"


def _dataset_import(page, world):
    page.locator("#field-dataset").select_option(str(world["dataset"].pk))  # already imported: a 400 on dataset
    return None, None


def _selection_refit(page, world):
    page.locator("#field-campaign").select_option(str(world["campaign"].pk))
    return "curve_points", "9"


FILLERS = {
    "diagnostic": _diagnostic,
    "generate": _generate,
    "evaluate": _evaluate,
    "reward_train": _reward_train,
    "finetune": _finetune,
    "preference_tune": _preference_tune,
    "dataset_import": _dataset_import,
    "selection_refit": _selection_refit,
}

SAYS = {
    "diagnostic": "greater than or equal to 1",
    "generate": "less than or equal to 256",
    "evaluate": "greater than or equal to 1",
    "reward_train": "must be a number in (0, 1) (got 2)",
    "finetune": "epochs: must be ≥ 1",
    "preference_tune": "beta: must be > 0",
    "dataset_import": "is already imported",
    "selection_refit": "less than or equal to 8",
}


def test_every_kind_has_a_form_case():
    assert set(FILLERS) == set(SAYS) == {kind.name for kind in run_kinds.available()}


@pytest.mark.parametrize("kind", sorted(FILLERS))
def test_the_form_shows_the_apis_message_beside_the_field(kind, world, users, page, login, live_server):
    login("engineer", "engineer-pass-123")
    _open_form(page, live_server, kind)
    field, text = FILLERS[kind](page, world)
    if field is not None:
        page.locator(f"#field-{field}").fill(text)
    else:
        field = "dataset"

    body = _submit(page)
    error = page.locator(f"#error-{field}")
    expect(error).not_to_be_empty()

    api = APIClient()
    api.force_authenticate(users["engineer"])
    answer = api.post(RUNS_API, body, format="json")
    assert answer.status_code == 400
    assert error.inner_text() == " ".join(answer.json()["config"][field])
    assert SAYS[kind] in error.inner_text()  # the error meant (not another one the config happens to have)
    expect(page.locator(f'[data-field="{field}"]')).to_have_class(re.compile(r"\binvalid\b"))
    assert not Run.objects.filter(created_by=users["engineer"]).exists()
    # Only what was set travels: the invalid value, what a preset or a choice filled, required fields.
    assert field in body["config"] and len(body["config"]) < 16, body
    if kind == "diagnostic":
        assert body == {"kind": "diagnostic", "config": {"steps": 0}}
    if kind == "finetune":
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / "run-form.png"), full_page=True)


def test_engineer_starts_a_generate_run_from_a_preset_and_runs_it_again(world, users, page, login, live_server):
    login("engineer", "engineer-pass-123")
    page.get_by_role("link", name="New run…").click()
    page.get_by_role("link", name="generate").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "true")
    page.get_by_role("button", name="quick sandbox").click()
    page.locator("#field-seed").fill("5")

    body = _submit(page)
    page.wait_for_url("**/runs/*/")

    eval_set = PromptSet.objects.get(name="sandbox-eval")
    assert body == {
        "kind": "generate",
        "config": {
            "model_versions": [world["base"].pk],
            "prompt_set": eval_set.pk,
            "images_per_prompt": 1,
            "steps": 10,
            "batch_size": 16,
            "seed": 5,
        },
    }
    run = Run.objects.get(created_by=users["engineer"])
    assert page.url == f"{live_server.url}/runs/{run.pk}/"
    assert (run.kind, run.config["seed"], run.config["dtype"]) == ("generate", 5, "auto")  # the server's default

    page.get_by_role("link", name="Run again with changes").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "true")
    expect(page.locator("#from-run")).to_contain_text(f"run #{run.pk}")
    expect(page.locator("#field-seed")).to_have_value("5")
    expect(page.locator("#field-prompt_set")).to_have_value(str(eval_set.pk))
    page.locator("#field-seed").fill("6")
    body = _submit(page)
    page.wait_for_url(f"**/runs/{run.pk + 1}/")
    left_out = {"safety_screen": "", "exclude_prompts": []}  # empty optional fields: the server's defaults
    assert body["config"] == {
        key: value for key, value in {**run.config, "seed": 6}.items() if left_out.get(key, ...) != value
    }
    again = Run.objects.get(pk=run.pk + 1)
    assert (again.config, again.created_by) == ({**run.config, "seed": 6}, users["engineer"])


def test_a_finetune_against_a_mix_of_reward_models_posts_its_rows(world, users, page, login, live_server):
    login("engineer", "engineer-pass-123")
    _open_form(page, live_server, "finetune")
    page.get_by_role("button", name="quick sandbox").click()
    page.locator("#field-oracle").select_option("")  # "(not set)": the mix is the reward
    page.get_by_role("button", name="Add reward models entry").click()
    page.locator("#field-reward_models-0-reward_model").select_option(str(world["reward_model"].pk))
    page.locator("#field-reward_models-0-weight").fill("0.5")

    body = _submit(page)
    page.wait_for_url("**/runs/*/")

    assert body["config"]["reward_models"] == [{"reward_model": world["reward_model"].pk, "weight": 0.5}]
    assert "oracle" not in body["config"]
    run = Run.objects.get(created_by=users["engineer"])
    assert run.kind == "finetune" and run.config["reward_models"] == body["config"]["reward_models"]


def test_reviewer_is_offered_generate_and_evaluate_only(world, users, page, login, live_server):
    login("reviewer", "reviewer-pass-123")
    page.goto(f"{live_server.url}/runs/new/")
    links = page.locator("ul.kind-list a")
    assert sorted(links.all_inner_texts()) == sorted(REVIEWER_RUN_KINDS)
    assert page.goto(f"{live_server.url}/runs/new/finetune/").status == 403

    _open_form(page, live_server, "evaluate")
    options = page.locator("#field-reward_model option")
    expect(options).to_have_count(2)  # "choose…" and the reward model
    page.get_by_role("button", name="quick sandbox").click()
    expect(page.locator("#field-reward_model")).to_have_value(str(world["reward_model"].pk))
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/runs/*/")
    run = Run.objects.get(created_by=users["reviewer"])
    assert run.kind == "evaluate" and page.url == f"{live_server.url}/runs/{run.pk}/"

"""An engineer starts a run from the runs page, watches its metrics plot live, and cancels another."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.models import Run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_engineer_starts_a_run_and_watches_its_metrics(start_worker, users, page, login, live_server):
    start_worker()
    login("engineer", "engineer-pass-123")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()

    page.get_by_label("Steps").fill("6")
    page.get_by_label("Seconds per step").fill("0.3")
    page.get_by_role("button", name="Start").click()

    page.wait_for_url("**/runs/*/")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=60_000)
    for metric in ("matmul_gflops", "step_seconds"):
        expect(page.locator(f'.chart-box[data-metric="{metric}"] canvas')).to_be_visible()
    expect(page.locator(".constant-metrics")).to_contain_text("attempt = 1")  # a flat series is text, not a chart
    expect(page.locator('[data-group="Throughput and time"] .chart-box[data-metric="step_seconds"]')).to_be_visible()
    expect(page.locator("#run-progress-text")).to_have_text("100%")
    expect(page.locator("#run-history li")).to_have_count(3)
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "run-detail.png"), full_page=True)

    run = Run.objects.get()
    assert run.state == "succeeded" and run.created_by == users["engineer"]
    page.goto(f"{live_server.url}/runs/")
    expect(page.get_by_role("link", name=f"#{run.pk}")).to_be_visible()
    page.screenshot(path=str(DOCS / "run-list.png"), full_page=True)


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_engineer_cancels_a_live_run_from_its_page(start_worker, users, page, login, live_server):
    start_worker()
    login("engineer", "engineer-pass-123")
    page.get_by_label("Steps").fill("500")
    page.get_by_label("Seconds per step").fill("0.2")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/runs/*/")
    expect(page.locator("#run-state")).to_have_text("running", timeout=60_000)

    page.get_by_role("button", name="Cancel run").click()

    expect(page.locator("#run-state")).to_have_text("cancelled", timeout=60_000)
    assert [h["state"] for h in Run.objects.get().state_history] == ["queued", "running", "cancelling", "cancelled"]


def test_reviewer_sees_runs_but_no_start_or_cancel_controls(users, page, login, live_server):
    from core import services

    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"])
    login("reviewer", "reviewer-pass-123")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()  # a reviewer's start page
    page.goto(f"{live_server.url}/runs/")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_role("button", name="Start")).to_have_count(0)
    page.goto(f"{live_server.url}/runs/{run.pk}/")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)


def test_annotator_is_refused_the_runs_pages(users, page, login, live_server):
    login("annotator", "annotator-pass-123")
    response = page.goto(f"{live_server.url}/runs/")
    assert response.status == 403


def test_generation_run_page_shows_its_images(users, page, login, live_server, settings, tmp_path):
    import io

    from django.core.management import call_command

    from core import services
    from core.run_execution import run_execute
    from generators.models import ModelVersion, PromptSet

    settings.MEDIA_ROOT = tmp_path
    call_command("sandbox_setup", stdout=io.StringIO())
    config = {
        "model_versions": [ModelVersion.objects.get(base_model__name="sandbox", name="base").pk],
        "prompt_set": PromptSet.objects.get(name="sandbox-eval").pk,
        "images_per_prompt": 2,
        "steps": 20,
    }
    run = services.run_create(kind="generate", config=config, created_by=users["engineer"])
    run_execute(run_id=run.pk, worker="inline")

    login("reviewer", "reviewer-pass-123")
    page.goto(f"{live_server.url}/runs/{run.pk}/")

    expect(page.locator("#run-images figure")).to_have_count(48)
    first = page.locator("#run-images img").first
    expect(first).to_have_attribute("alt", "a red circle (seed 0)")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#run-images img')].every(i => i.complete && i.naturalWidth === 32)"
    )
    page.screenshot(path=str(DOCS / "generation-run.png"), full_page=True)

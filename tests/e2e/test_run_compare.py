"""The run comparison page overlays several runs' curves (integer steps, readable ticks, smoothing), reached by
ticking runs on the runs page; its CSV link serves the stored points."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from core import services
from core.models import Run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def three_runs(users):
    runs = []
    for index in range(3):
        run = Run.objects.create(kind="finetune", created_by=users["engineer"], state="running", attempts=1)
        for step in range(1, 9):
            services.metrics_log(
                run_id=run.pk,
                attempt=1,
                step=step,
                values={"reward_mean": index + step * 0.1 * (index + 1), "loss": 1.0 / step, "kl": 1.7347e-18 * step},
            )
        Run.objects.filter(pk=run.pk).update(state="succeeded")
        runs.append(run)
    return runs


def _chart(page, metric: str) -> dict:
    return page.evaluate(
        """(metric) => {
            const chart = Chart.getChart(document.querySelector(`.chart-box[data-metric="${metric}"] canvas`));
            return {datasets: chart.data.datasets.length, xTicks: chart.scales.x.ticks.map((t) => t.value),
                    yLabels: chart.scales.y.ticks.map((t) => t.label)};
        }""",
        metric,
    )


def test_three_runs_overlaid_from_the_runs_page(three_runs, page, login, live_server):
    login("engineer", "engineer-pass-123")
    page.goto(f"{live_server.url}/runs/")
    for run in three_runs:
        page.get_by_label(f"compare run {run.pk}").check()
    page.get_by_role("button", name="Compare selected runs").click()

    page.wait_for_url("**/runs/compare/**")
    expect(page.locator("#compared-runs tbody tr")).to_have_count(3)
    expect(page.locator('.chart-box[data-metric="reward_mean"] canvas')).to_be_visible()
    reward = _chart(page, "reward_mean")
    assert reward["datasets"] == 3
    assert reward["xTicks"] and all(float(v).is_integer() for v in reward["xTicks"])  # steps, not 1.5
    kl = _chart(page, "kl")
    assert kl["yLabels"] and all(len(label) <= 7 for label in kl["yLabels"])  # never 1.7347e-18
    assert page.evaluate("RunCharts.formatNumber(1.7347e-18)") == "1.73e-18"
    assert page.evaluate("RunCharts.formatNumber(0.123456)") == "0.123"
    ticks = "[0.3, 0.301, 0.302].map((value) => ({value}))"
    assert page.evaluate(f"{ticks}.map((t, i, all) => RunCharts.tickLabel(t.value, i, all))") == [
        "0.300",
        "0.301",
        "0.302",
    ]
    expect(page.locator('[data-group="Reward and accuracy"] .chart-box[data-metric="reward_mean"]')).to_be_visible()
    expect(page.locator('[data-group="Loss"] .chart-box[data-metric="loss"]')).to_be_visible()

    page.get_by_label("smoothing").fill("0.8")
    assert _chart(page, "reward_mean")["datasets"] == 6  # each run's raw curve, faint, under its smoothed one
    DOCS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS / "run-compare.png"), full_page=True)

    csv_url = page.locator('[data-role="metrics-csv"]').get_attribute("href")
    response = page.request.get(f"{live_server.url}{csv_url}")
    assert response.status == 200 and response.text().count("\n") == 1 + 3 * 8 * 3


def test_unknown_runs_are_named_on_the_page(three_runs, page, login, live_server):
    login("reviewer", "reviewer-pass-123")
    response = page.goto(f"{live_server.url}/runs/compare/?runs=999999")
    assert response.status == 400
    expect(page.locator("#compare-error")).to_have_text("No run 999999.")

"""Runs' metrics as CSV: the file round-trips the stored points; bad ids are 400/404 with a message."""

from __future__ import annotations

import csv
import io
import math

import pytest

from core import services
from core.models import MetricPoint, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs(users):
    made = []
    for index in range(3):
        run = Run.objects.create(kind="diagnostic", created_by=users["engineer"], state="running", attempts=1)
        services.metrics_log(run_id=run.pk, attempt=1, step=1, values={"loss": 0.5 / (index + 1), "tiny": 1.7347e-18})
        services.metrics_log(run_id=run.pk, attempt=1, step=2, values={"loss": 0.1 + index, "tiny": float("nan")})
        made.append(run)
    return made


def test_the_csv_round_trips_every_stored_point(runs, client_for):
    ids = [run.pk for run in runs]
    response = client_for("reviewer").get(f"/api/v1/runs/metrics.csv?runs={','.join(map(str, ids))}")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    read = {(int(r["run"]), r["key"], int(r["step"])): (float(r["value"]) if r["value"] else None) for r in rows}
    stored = {(p.run_id, p.key, p.step): p.value for p in MetricPoint.objects.filter(run__in=runs)}
    assert read == stored and len(rows) == len(stored) == 12
    assert read[(ids[0], "tiny", 2)] is None and not math.isnan(read[(ids[0], "tiny", 1)])


@pytest.mark.parametrize("query", ["", "?runs=", "?runs=a,b", "?runs=1;2", "?runs=" + ",".join(map(str, range(1, 30)))])
def test_bad_run_lists_are_400_naming_runs(client_for, query):
    response = client_for("engineer").get(f"/api/v1/runs/metrics.csv{query}")

    assert response.status_code == 400 and "runs" in response.json()


def test_a_missing_run_is_404_naming_it(runs, client_for):
    response = client_for("engineer").get(f"/api/v1/runs/metrics.csv?runs={runs[0].pk},999999")

    assert response.status_code == 404 and "999999" in response.json()["detail"]

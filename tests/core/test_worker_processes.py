"""Real worker processes (not eager mode) drive runs through the broker: success, SIGKILL recovery, cancel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.files.storage import default_storage

from core import services
from core.models import Artifact, MetricPoint, Run
from tests.support.workers import ROOT, WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _state(run_id: int) -> str:
    return Run.objects.get(pk=run_id).state


def _finished(run_id: int) -> Run | None:
    run = Run.objects.get(pk=run_id)
    return run if run.is_terminal else None


def test_worker_process_drives_a_run_to_succeeded(start_worker, broker, users):
    start_worker()
    run = services.run_create(
        kind="diagnostic", config={"steps": 3, "step_seconds": 0.05}, created_by=users["engineer"]
    )

    done = wait_until(lambda: _finished(run.pk), timeout=90, what=f"run {run.pk} to finish on {broker['name']}")

    assert done.state == "succeeded", done.error
    assert done.attempts == 1
    assert done.progress == 1.0
    assert done.result["steps"] == 3 and done.result["torch"]
    assert [h["state"] for h in done.state_history] == ["queued", "running", "succeeded"]
    assert sorted(MetricPoint.objects.filter(run=run, key="matmul_gflops").values_list("step", flat=True)) == [1, 2, 3]


def test_sigkilled_worker_leaves_a_run_that_another_worker_finishes_exactly_once(start_worker, broker, users):
    steps = 16
    first = start_worker()
    run = services.run_create(
        kind="diagnostic", config={"steps": steps, "step_seconds": 0.4}, created_by=users["engineer"]
    )
    wait_until(
        lambda: MetricPoint.objects.filter(run=run, key="matmul_gflops", step__gte=4).exists(),
        timeout=90,
        what="the first worker to get through 4 steps",
    )
    first.kill()
    killed_at_step = MetricPoint.objects.filter(run=run, key="matmul_gflops").count()
    assert _state(run.pk) == "running" and killed_at_step < steps

    start_worker()
    done = wait_until(lambda: _finished(run.pk), timeout=120, what="the second worker to finish the run")

    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    assert [h["state"] for h in done.state_history].count("succeeded") == 1
    # Resumed from its checkpoint: every step exactly once, early steps from attempt 1, late ones from attempt 2.
    by_step = dict(MetricPoint.objects.filter(run=run, key="attempt").values_list("step", "value"))
    assert sorted(by_step) == list(range(1, steps + 1))
    assert by_step[1] == 1.0 and by_step[steps] == 2.0
    assert done.result["resumed_from_step"] >= killed_at_step - 1
    assert MetricPoint.objects.filter(run=run).count() == 3 * steps  # three series, no duplicates
    # One row per artifact name; superseded checkpoint files were removed. At most one stray file may
    # remain: a checkpoint written by the killed worker in the instant before its row switched.
    artifacts = list(Artifact.objects.filter(run=run))
    assert sorted(a.name for a in artifacts) == [
        "checkpoint",
        "environment-attempt-1.json",
        "environment-attempt-2.json",
    ]
    _, files = default_storage.listdir(f"runs/{run.pk}")
    referenced = {a.file.name.rsplit("/", 1)[1] for a in artifacts}
    assert referenced <= set(files)
    assert len(set(files) - referenced) <= 1, files


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)  # cancel does not depend on the broker
def test_cancel_of_a_running_run_goes_through_cancelling(start_worker, engineer_client):
    start_worker()
    created = engineer_client.post(
        "/api/v1/runs/", {"kind": "diagnostic", "config": {"steps": 200, "step_seconds": 0.2}}, format="json"
    )
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    wait_until(
        lambda: MetricPoint.objects.filter(run_id=run_id, step__gte=2).exists(), timeout=90, what="run to be running"
    )

    response = engineer_client.post(f"/api/v1/runs/{run_id}/cancel/")

    assert response.status_code == 202
    assert response.json()["state"] == "cancelling"
    done = wait_until(lambda: _finished(run_id), timeout=60, what="the run to stop")
    assert done.state == "cancelled"
    assert [h["state"] for h in done.state_history] == ["queued", "running", "cancelling", "cancelled"]
    assert MetricPoint.objects.filter(run_id=run_id, key="matmul_gflops").count() < 200


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_diagnostic_command_waits_and_prints_a_json_summary_last(start_worker):
    worker = start_worker()
    command = [
        sys.executable,
        "manage.py",
        "diagnostic",
        "--steps",
        "3",
        "--step-seconds",
        "0.1",
        "--wait",
        "--timeout",
        "90",
    ]

    result = subprocess.run(command, cwd=ROOT, env=worker.env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["state"] == "succeeded" and summary["result"]["steps"] == 3
    assert "100%" in result.stderr  # the progress bar reached the end


@pytest.mark.parametrize("broker", ["filesystem"], indirect=True)
def test_diagnostic_command_rejects_bad_input(start_worker):
    worker = WorkerProcess(broker_url="filesystem://", var_dir=ROOT / "var")  # env only; not started
    result = subprocess.run(
        [sys.executable, "manage.py", "diagnostic", "--steps", "0"],
        cwd=ROOT,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Invalid diagnostic config" in result.stderr and "steps" in result.stderr

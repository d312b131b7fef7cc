"""Run services in-process: the state machine, claims and fencing, metrics, artifacts, outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from core import services
from core.jobs import AttemptSuperseded
from core.models import Artifact, MetricPoint, Run
from core.run_execution import DbJobContext, run_execute
from core.run_states import IllegalTransition, check_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(users):
    return services.run_create(kind="diagnostic", config={"steps": 3, "step_seconds": 0}, created_by=users["engineer"])


def _age_heartbeat(run_id: int, seconds: float) -> None:
    Run.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("succeeded", "running"),
        ("failed", "queued"),
        ("cancelled", "running"),
        ("queued", "succeeded"),
        ("running", "queued"),
    ],
)
def test_illegal_transitions_raise_a_clear_error(current, target):
    with pytest.raises(IllegalTransition) as raised:
        check_transition(7, current, target)
    assert f"Run 7 is {current}; it cannot become {target}" in str(raised.value)


def test_first_claim_starts_attempt_one(run):
    claim = services.run_claim(run_id=run.pk, worker="w1")

    assert claim.attempt == 1 and not claim.resumed
    run.refresh_from_db()
    assert run.state == "running" and run.worker == "w1" and run.started_at is not None


def test_duplicate_delivery_while_the_worker_is_alive_is_dropped(run):
    services.run_claim(run_id=run.pk, worker="w1")
    assert services.run_claim(run_id=run.pk, worker="w2") is None
    assert Run.objects.get(pk=run.pk).attempts == 1


def test_stale_run_is_taken_over_and_the_old_attempt_is_fenced_off(run, settings):
    services.run_claim(run_id=run.pk, worker="w1")
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)

    claim = services.run_claim(run_id=run.pk, worker="w2")

    assert claim.attempt == 2 and claim.resumed
    assert services.run_heartbeat(run_id=run.pk, attempt=1) is None
    with pytest.raises(AttemptSuperseded):
        services.run_report_progress(run_id=run.pk, attempt=1, fraction=0.5)
    with pytest.raises(AttemptSuperseded):
        services.run_succeed(run_id=run.pk, attempt=1, result={})
    assert services.run_succeed(run_id=run.pk, attempt=2, result={"ok": True}).state == "succeeded"
    with pytest.raises(AttemptSuperseded):  # a finished run takes no more writes, not even from its last attempt
        services.metrics_log(run_id=run.pk, attempt=2, step=9, values={"loss": 1.0})


def _stored_files(run_id: int) -> set[str]:
    folder = f"runs/{run_id}"
    return set(default_storage.listdir(folder)[1]) if default_storage.exists(folder) else set()


def test_a_superseded_attempt_writes_no_metric_artifact_or_checkpoint(
    run, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="w1")
    services.checkpoint_save(run=run, attempt=1, payload=b"step 1 of attempt 1")
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)
    services.run_claim(run_id=run.pk, worker="w2")
    with django_capture_on_commit_callbacks(execute=True):
        services.checkpoint_save(run=run, attempt=2, payload=b"step 2 of attempt 2")
    services.metrics_log(run_id=run.pk, attempt=2, step=2, values={"loss": 0.5})
    files_of_attempt_2 = _stored_files(run.pk)

    stale_writes = [
        lambda: services.checkpoint_save(run=run, attempt=1, payload=b"step 3 of attempt 1"),
        lambda: services.metrics_log(run_id=run.pk, attempt=1, step=2, values={"loss": 9.0}),
        lambda: services.artifact_save(run=run, attempt=1, name="report.json", data=b"{}", kind="report"),
    ]
    for write in stale_writes:
        with django_capture_on_commit_callbacks(execute=True), pytest.raises(AttemptSuperseded):
            write()

    assert services.checkpoint_load(run_id=run.pk) == b"step 2 of attempt 2"
    assert Artifact.objects.get(run=run, name="checkpoint").attempt == 2
    assert list(MetricPoint.objects.filter(run=run).values_list("step", "value", "attempt")) == [(2, 0.5, 2)]
    assert not Artifact.objects.filter(run=run, name="report.json").exists()
    assert _stored_files(run.pk) == files_of_attempt_2  # the refused attempt's files were removed
    assert len(files_of_attempt_2) == 1 and next(iter(files_of_attempt_2)).startswith("a2-")


def test_a_superseded_attempt_cannot_write_the_jobs_own_rows_either(run, settings, django_user_model):
    """The executors write a job's own rows (a version, a reward model, a dataset's outcome) in run_fenced: a
    superseded attempt that wakes up after the take-over commits nothing of them."""
    services.run_claim(run_id=run.pk, worker="w1")
    with services.run_fenced(run_id=run.pk, attempt=1):
        django_user_model.objects.create(username="written-while-attempt-1-held-the-run")
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)
    services.run_claim(run_id=run.pk, worker="w2")
    with pytest.raises(AttemptSuperseded), services.run_fenced(run_id=run.pk, attempt=1):
        django_user_model.objects.create(username="written-by-the-superseded-attempt")
    names = set(django_user_model.objects.values_list("username", flat=True))
    assert "written-while-attempt-1-held-the-run" in names and "written-by-the-superseded-attempt" not in names


def test_identical_bytes_from_a_new_attempt_keep_the_row_and_leave_no_file(run, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="w1")
    first = services.checkpoint_save(run=run, attempt=1, payload=b"step 1")
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)
    services.run_claim(run_id=run.pk, worker="w2")

    again = services.checkpoint_save(run=run, attempt=2, payload=b"step 1")

    assert again.file.name == first.file.name and again.attempt == 1
    assert _stored_files(run.pk) == {first.file.name.rsplit("/", 1)[1]}


def test_a_job_context_stops_at_its_first_refused_write(run, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="w1")
    ctx = DbJobContext(Run.objects.get(pk=run.pk), attempt=1)
    ctx.log_metrics(1, {"loss": 1.0})
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)
    services.run_claim(run_id=run.pk, worker="w2")

    with pytest.raises(AttemptSuperseded):
        ctx.save_checkpoint(b"late")

    assert ctx.lease_lost and ctx.should_stop()
    with pytest.raises(AttemptSuperseded):
        ctx.report_progress(0.9)
    assert services.checkpoint_load(run_id=run.pk) is None
    assert MetricPoint.objects.get(run=run).attempt == 1


def test_heartbeats_that_keep_failing_stop_the_attempt_loudly(run, settings, monkeypatch, caplog):
    from django.db import OperationalError

    services.run_claim(run_id=run.pk, worker="w1")
    ctx = DbJobContext(Run.objects.get(pk=run.pk), attempt=1)
    assert not ctx.should_stop()

    def unreachable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "run_heartbeat", unreachable)
    settings.RUN_STALE_AFTER_SECONDS = 0  # no good beat for longer than the stale timeout: maybe taken over

    assert ctx.should_stop()
    assert ctx.lease_lost
    assert "heartbeat of run" in caplog.text and "it stops" in caplog.text


def test_run_that_keeps_losing_its_worker_fails_after_max_attempts(users, settings):
    run = services.run_create(kind="diagnostic", config={}, created_by=users["engineer"], max_attempts=2)
    for worker in ("w1", "w2"):
        services.run_claim(run_id=run.pk, worker=worker)
        _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)

    assert services.run_claim(run_id=run.pk, worker="w3") is None

    run.refresh_from_db()
    assert run.state == "failed"
    assert "Gave up after 2 attempts" in run.error and "w2" in run.error


def test_stale_cancelling_run_is_finished_as_cancelled(run, settings):
    services.run_claim(run_id=run.pk, worker="w1")
    services.run_request_cancel(run_id=run.pk)
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)

    assert services.run_claim(run_id=run.pk, worker="w2") is None
    assert Run.objects.get(pk=run.pk).state == "cancelled"


def test_finished_runs_are_never_claimed_again(run):
    services.run_request_cancel(run_id=run.pk)
    assert services.run_claim(run_id=run.pk, worker="w1") is None
    assert services.run_claim(run_id=424242, worker="w1") is None


def test_requeue_sends_each_stale_run_once_per_stale_period(run, settings, django_capture_on_commit_callbacks):
    services.run_claim(run_id=run.pk, worker="w1")
    assert services.runs_requeue_stale() == []
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)

    with django_capture_on_commit_callbacks() as dispatched:
        assert services.runs_requeue_stale() == [run.pk]
        assert services.runs_requeue_stale() == []

    assert len(dispatched) == 1


def test_metrics_upsert_never_duplicates_a_step(run):
    services.run_claim(run_id=run.pk, worker="w1")
    services.metrics_log(run_id=run.pk, attempt=1, step=1, values={"loss": 1.0})
    services.metrics_log(run_id=run.pk, attempt=1, step=1, values={"loss": 0.5})

    assert list(MetricPoint.objects.filter(run=run).values_list("step", "value")) == [(1, 0.5)]


def test_artifact_save_is_idempotent_and_replacing_removes_the_old_file(
    run, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="w1")
    first = services.artifact_save(run=run, attempt=1, name="report.json", data=b"{}", kind="report")
    again = services.artifact_save(run=run, attempt=1, name="report.json", data=b"{}", kind="report")
    assert again.pk == first.pk and again.file.name == first.file.name

    with django_capture_on_commit_callbacks(execute=True):
        replaced = services.artifact_save(run=run, attempt=1, name="report.json", data=b'{"a": 1}', kind="report")

    assert Artifact.objects.filter(run=run).count() == 1
    assert replaced.size == 8 and replaced.file.name.split("/")[-1].startswith(f"a1-{replaced.sha256[:16]}-")
    assert not default_storage.exists(first.file.name)
    assert services.checkpoint_load(run_id=run.pk) is None


def test_execute_succeeds_with_result_metrics_and_checkpoint(run, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded"

    run.refresh_from_db()
    assert run.result["steps"] == 3 and run.result["resumed_from_step"] == 0
    assert services.checkpoint_load(run_id=run.pk) == b'{"step": 3}'
    assert MetricPoint.objects.filter(run=run, key="matmul_gflops").count() == 3


def test_execute_caps_torch_threads_when_the_worker_setting_asks(run, settings, tmp_path):
    import torch

    settings.MEDIA_ROOT, settings.WORKER_TORCH_THREADS = tmp_path, 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert run_execute(run_id=run.pk, worker="inline") == "succeeded"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_execute_resumes_from_the_checkpoint(run, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="lost")
    services.checkpoint_save(run=run, attempt=1, payload=b'{"step": 2}')
    _age_heartbeat(run.pk, settings.RUN_STALE_AFTER_SECONDS + 1)

    run_execute(run_id=run.pk, worker="inline")

    run.refresh_from_db()
    assert run.result["resumed_from_step"] == 2 and run.attempts == 2
    assert list(MetricPoint.objects.filter(run=run, key="matmul_gflops").values_list("step", flat=True)) == [3]


def test_job_failure_becomes_a_failed_run_with_a_readable_error(users, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    run = services.run_create(
        kind="diagnostic", config={"steps": 5, "step_seconds": 0, "fail_at_step": 2}, created_by=users["engineer"]
    )

    assert run_execute(run_id=run.pk, worker="inline") == "failed"

    run.refresh_from_db()
    assert run.error == "diagnostic failure drill: fail_at_step=2 was requested"
    assert run.state_history[-1]["state"] == "failed"


def test_cuda_request_on_a_cpu_worker_fails_readably(users, settings, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this worker has CUDA")
    settings.MEDIA_ROOT = tmp_path
    run = services.run_create(kind="diagnostic", config={"device": "cuda"}, created_by=users["engineer"])

    run_execute(run_id=run.pk, worker="inline")

    run.refresh_from_db()
    assert run.state == "failed" and "has no CUDA device" in run.error


def test_cancel_requested_before_the_job_checks_stops_it(run, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    services.run_claim(run_id=run.pk, worker="elsewhere")
    services.run_request_cancel(run_id=run.pk)
    assert Run.objects.get(pk=run.pk).state == "cancelling"
    _age_heartbeat(run.pk, 0)
    # The job on "elsewhere" checks should_stop() before its next step and stops.
    from core.run_execution import DbJobContext

    ctx = DbJobContext(Run.objects.get(pk=run.pk), attempt=1)
    assert ctx.should_stop()
    services.run_mark_cancelled(run_id=run.pk, attempt=1)
    assert [h["state"] for h in Run.objects.get(pk=run.pk).state_history] == [
        "queued",
        "running",
        "cancelling",
        "cancelled",
    ]

"""Fencing with real worker processes: a fine-tuning worker frozen (SIGSTOP) past the stale timeout is taken over
by another worker; once it wakes up (SIGCONT) nothing it writes lands, and the adapter equals an uninterrupted run's.
"""

from __future__ import annotations

import io
import os
import signal
import time
from datetime import datetime

import pytest
import torch
from django.core.files.storage import default_storage
from django.core.management import call_command

from core import services
from core.models import Artifact, MetricPoint, Run
from generators.models import ModelVersion, PromptSet
from tests.support.workers import WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EPOCHS = 4
SMALL = {
    "epochs": EPOCHS,
    "samples_per_epoch": 8,
    "images_per_prompt": 4,
    "sample_batch_size": 8,
    "train_batch_size": 4,
    "steps": 4,
    "eval_every": 2,
    "eval_images_per_prompt": 1,
    "grid_prompts": 2,
}
ADAPTER = "pytorch_lora_weights.safetensors"


def _finetune(name: str) -> Run:
    config = {
        "model_version": ModelVersion.objects.get(base_model__name="sandbox", name="base").pk,
        "oracle": "area",
        "train_prompt_set": PromptSet.objects.get(name="sandbox-train").pk,
        "eval_prompt_set": PromptSet.objects.get(name="sandbox-eval").pk,
        "device": "cpu",
        "name": name,
        **SMALL,
    }
    return services.run_create(kind="finetune", config=config)


def _finished(run_id: int) -> Run | None:
    run = Run.objects.get(pk=run_id)
    return run if run.is_terminal else None


def _wait_for_take_over(frozen: WorkerProcess, run_id: int) -> None:
    """Wait until another worker claims the run as attempt 2 while ``frozen`` stays stopped.

    A process frozen inside one of its (millisecond) transactions would hold the run's row lock and keep the
    take-over waiting: then it is thawed for an instant and frozen again.
    """
    for _ in range(4):
        try:
            wait_until(lambda: Run.objects.get(pk=run_id).attempts >= 2, timeout=90, what="the take-over")
            return
        except AssertionError:
            os.killpg(frozen.process.pid, signal.SIGCONT)
            time.sleep(0.05)
            os.killpg(frozen.process.pid, signal.SIGSTOP)
    raise AssertionError(f"run {run_id} was not taken over")


def _adapter(artifact: Artifact) -> tuple[dict, dict]:
    """The adapter file's metadata and tensors. (Not its bytes: safetensors writes the metadata entries in a
    per-process order.)"""
    from safetensors import safe_open

    with safe_open(artifact.file.path, "pt") as weights:
        return weights.metadata(), {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118 (no __iter__)


def _take_over_time(run: Run) -> datetime:
    entry = next(h for h in run.state_history if h["attempt"] == 2 and "resumed by" in h["note"])
    return datetime.fromisoformat(entry["at"])


def test_a_frozen_worker_that_wakes_up_after_a_take_over_writes_nothing(start_worker, broker, settings):
    call_command("sandbox_setup", stdout=io.StringIO())
    # Its heartbeat thread stays silent (as in one very long step): only the database can fence it off.
    first = start_worker(RUN_HEARTBEAT_SECONDS="3600")
    run = _finetune("fenced")
    wait_until(
        lambda: MetricPoint.objects.filter(run=run, key="reward_mean", step__gte=1).exists(),
        timeout=180,
        what="the first worker to finish epoch 1",
    )

    os.killpg(first.process.pid, signal.SIGSTOP)
    start_worker()  # the stale timeout passes while it starts
    _wait_for_take_over(first, run.pk)
    taken_over = _take_over_time(Run.objects.get(pk=run.pk))
    os.killpg(first.process.pid, signal.SIGCONT)
    done = wait_until(lambda: _finished(run.pk), timeout=240, what="the second worker to finish the run")
    # Its next write after waking up was refused by the database, or its heartbeat thread, waking up first, found
    # the lease gone; either way it stops without an outcome (the rows below show that it wrote nothing late).
    wait_until(lambda: "superseded" in first.log(), timeout=60, what="the first worker to notice it was superseded")
    log = first.log()
    assert "attempt 1 no longer holds the run" in log or "attempt 1 lost its lease" in log

    assert done.state == "succeeded", done.error
    assert done.attempts == 2 and first.process.poll() is None  # the first worker lives on, fenced off
    late = MetricPoint.objects.filter(run=run, attempt=1, recorded_at__gte=taken_over)
    assert not late.exists(), list(late.values("key", "step", "recorded_at"))
    assert not Artifact.objects.filter(run=run, attempt=1, updated_at__gte=taken_over).exists()
    artifacts = {a.name: a for a in Artifact.objects.filter(run=run)}
    assert {artifacts[name].attempt for name in ("checkpoint", ADAPTER, "eval_grid.png")} == {2}
    assert MetricPoint.objects.filter(run=run, key="reward_mean").count() == EPOCHS
    files = default_storage.listdir(f"runs/{run.pk}")[1]
    assert not [f for f in files if f.startswith("a1-")], files  # replaced, refused or orphaned: all removed
    assert ModelVersion.objects.get(produced_by_run=run).name == "fenced"

    first.stop()  # its silent heartbeat would let the stale timeout take the uninterrupted run over from it
    straight = _finetune("straight")
    straight_done = wait_until(lambda: _finished(straight.pk), timeout=240, what="the uninterrupted run")
    assert straight_done.state == "succeeded", straight_done.error
    assert straight_done.attempts == 1
    fenced_metadata, fenced_weights = _adapter(artifacts[ADAPTER])
    straight_metadata, straight_weights = _adapter(Artifact.objects.get(run=straight, name=ADAPTER))
    assert fenced_metadata == straight_metadata and sorted(fenced_weights) == sorted(straight_weights)
    for key, weight in fenced_weights.items():
        assert torch.equal(weight, straight_weights[key]), key

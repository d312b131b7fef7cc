"""The ``finetune`` run's new version: its name is checked before training, and a name taken while the run
trained fails the run readably with the adapter kept as an artifact (never an IntegrityError)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core import services as run_services
from core.models import Run
from core.run_execution import run_execute
from generators import services as generator_services
from generators.models import ModelVersion, PromptSet
from tests.finetune.ddpo_support import RUN_TINY

pytestmark = pytest.mark.django_db

TINY = {**RUN_TINY, "epochs": 1}


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    return ModelVersion.objects.get(base_model__name="sandbox", name="base")


def _finetune(parent: ModelVersion, **overrides) -> Run:
    config = {
        "model_version": parent.pk,
        "oracle": "area",
        "train_prompt_set": PromptSet.objects.get(name="sandbox-train").pk,
        "eval_prompt_set": PromptSet.objects.get(name="sandbox-eval").pk,
        "device": "cpu",
        **TINY,
        **overrides,
    }
    return run_services.run_create(kind="finetune", config=config)


def test_a_default_name_taken_before_the_run_starts_fails_it_before_training(sandbox):
    run = _finetune(sandbox)
    generator_services.model_version_create(base_model=sandbox.base_model, name=f"ddpo-{run.pk}")

    assert run_execute(run_id=run.pk, worker="inline") == "failed"

    run.refresh_from_db()
    assert run.error == f"sandbox already has a version 'ddpo-{run.pk}'; start the run with another name."
    assert not run.artifacts.exists() and not run.metric_points.exists()  # nothing was trained


def test_a_name_taken_while_training_fails_the_run_and_keeps_the_adapter(sandbox, monkeypatch):
    import finetune.trainer

    real_run_ddpo = finetune.trainer.run_ddpo

    def another_engineer_takes_the_name_meanwhile(*args, **kwargs):
        result = real_run_ddpo(*args, **kwargs)
        generator_services.model_version_create(base_model=sandbox.base_model, name="tuned")
        return result

    monkeypatch.setattr(finetune.trainer, "run_ddpo", another_engineer_takes_the_name_meanwhile)
    run = _finetune(sandbox, name="tuned")

    assert run_execute(run_id=run.pk, worker="inline") == "failed"

    run.refresh_from_db()
    adapter = run.artifacts.get(name="pytorch_lora_weights.safetensors")
    assert "took the name 'tuned' while this run trained" in run.error
    assert f"kept as the artifact 'pytorch_lora_weights.safetensors' of run {run.pk}" in run.error
    assert "IntegrityError" not in run.error and adapter.size > 0
    assert not ModelVersion.objects.filter(produced_by_run=run).exists()

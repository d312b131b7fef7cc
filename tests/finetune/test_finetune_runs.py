"""The ``finetune`` run through the platform: validation, a short DDPO run, the new version and its adapter."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core import plugins
from core.models import Run
from core.run_execution import run_execute
from finetune.models import FineTune
from generators.models import GeneratedImage, ModelVersion, PromptSet
from tests.finetune.ddpo_support import RUN_TINY

pytestmark = pytest.mark.django_db

TINY = RUN_TINY


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command("sandbox_setup", stdout=io.StringIO())
    return {
        "version": ModelVersion.objects.get(base_model__name="sandbox", name="base"),
        "train": PromptSet.objects.get(name="sandbox-train"),
        "eval": PromptSet.objects.get(name="sandbox-eval"),
    }


def _config(sandbox, **overrides) -> dict:
    return {
        "model_version": sandbox["version"].pk,
        "oracle": "area",
        "gold_oracle": "colour",
        "train_prompt_set": sandbox["train"].pk,
        "eval_prompt_set": sandbox["eval"].pk,
        "device": "cpu",
        **TINY,
        **overrides,
    }


def test_finetune_run_makes_a_child_version_whose_adapter_generates(sandbox, client_for, users):
    response = client_for("engineer").post(
        "/api/v1/runs/", {"kind": "finetune", "config": _config(sandbox, name="tuned")}, format="json"
    )
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]

    assert run_execute(run_id=run_id, worker="inline") == "succeeded", Run.objects.get(pk=run_id).error

    run = Run.objects.get(pk=run_id)
    version = ModelVersion.objects.get(pk=run.result["model_version"])
    assert version.name == "tuned" and version.parent == sandbox["version"] and version.produced_by_run == run
    assert version.adapter.name == "pytorch_lora_weights.safetensors"
    assert FineTune.objects.get(run=run).oracle == "area"
    assert run.result["eval_reward_before"] is not None and run.result["eval_gold_reward_after"] is not None
    assert {"reward_mean", "eval_reward_mean"} <= set(run.metric_points.values_list("key", flat=True))
    assert run.artifacts.filter(name="eval_grid.png").exists()

    generate = {"model_versions": [version.pk], "prompt_set": sandbox["eval"].pk, "steps": 4}
    gen_run = client_for("engineer").post("/api/v1/runs/", {"kind": "generate", "config": generate}, format="json")
    assert run_execute(run_id=gen_run.json()["id"], worker="inline") == "succeeded"
    assert GeneratedImage.objects.filter(model_version=version).count() == sandbox["eval"].prompts.count()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"clip_range": 0}, "clip_range"),
        ({"images_per_prompt": 3}, "images_per_prompt"),
        ({"surprise": 1}, "surprise"),
        ({"oracle": "rm -rf /"}, "oracle"),
        ({"reward_model": 999}, "reward_model"),
        ({"model_version": 999}, "model_version"),
    ],
)
def test_bad_finetune_configs_are_400_naming_the_field(sandbox, client_for, users, overrides, field):
    body = {"kind": "finetune", "config": _config(sandbox, **overrides)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and field in response.json()["config"], response.json()


def test_prompt_sets_must_have_the_right_split(sandbox, client_for, users):
    body = {"kind": "finetune", "config": _config(sandbox, train_prompt_set=sandbox["eval"].pk)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert "not train" in response.json()["config"]["train_prompt_set"][0]


@pytest.mark.parametrize("field", ["oracle", "gold_oracle"])
@pytest.mark.parametrize("name", ["shutil.rmtree", "shutil:rmtree", "tests.finetune.test_finetune_runs.record"])
def test_an_oracle_given_as_a_dotted_path_is_400_naming_the_registered_ones(sandbox, client_for, users, field, name):
    body = {"kind": "finetune", "config": _config(sandbox, **{field: name})}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    registered = ", ".join(sorted(plugins.names("oracle")))
    assert "area" in registered and f"Registered: {registered}." in response.json()["config"][field][0]
    assert not Run.objects.exists()


def test_a_forged_config_naming_code_fails_on_the_worker_without_importing_or_calling_it(sandbox, users, tmp_path):
    """The proven attack: oracle shutil.rmtree and a prompt that is a directory; here written past validation."""
    from core import services
    from generators.services import prompt_set_create

    victim = tmp_path / "victim"
    victim.mkdir()
    train = prompt_set_create(name="paths", split="train", prompts=[str(victim)])
    run = services.run_create(kind="finetune", config=_config(sandbox))
    forged = {**run.config, "oracle": "shutil.rmtree", "train_prompt_set": train.pk}
    Run.objects.filter(pk=run.pk).update(config=forged)

    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    assert "Unknown oracle 'shutil.rmtree'" in Run.objects.get(pk=run.pk).error
    assert victim.is_dir()

    Run.objects.filter(pk=run.pk).update(state="queued", config={**run.config, "gold_oracle": _HERE + ".record"})
    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    assert f"Unknown oracle '{_HERE}.record'" in Run.objects.get(pk=run.pk).error
    assert RECORDED == []


_HERE = "tests.finetune.test_finetune_runs"
RECORDED: list = []


def record(prompt, image) -> float:
    RECORDED.append(prompt)
    return 0.0


def test_an_oracle_the_operator_registers_in_settings_is_accepted(sandbox, client_for, users, settings):
    settings.PLUGINS = {"oracle": {"broken": f"{_HERE}:broken"}}
    body = {"kind": "finetune", "config": _config(sandbox, oracle="broken")}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 201, response.json()


def test_a_reward_that_raises_fails_the_run_readably(sandbox, users, settings):
    from core import services

    settings.PLUGINS = {"oracle": {"broken": f"{_HERE}:broken"}}
    run = services.run_create(kind="finetune", config=_config(sandbox, oracle="broken"))

    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    assert "reward" in Run.objects.get(pk=run.pk).error.lower()


def broken(prompt, image) -> float:
    raise RuntimeError("the oracle exploded")


def test_finetune_command_starts_a_run(sandbox, users):
    out = io.StringIO()
    call_command(
        "finetune",
        "--model-version",
        str(sandbox["version"].pk),
        "--oracle",
        "area",
        "--set",
        "epochs=3",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert '"kind": "finetune"' in out.getvalue()
    assert Run.objects.get(kind="finetune").config["epochs"] == 3

"""The ``preference_tune`` run through the platform: validation, a short DPO / KTO run from a dataset of votes, the
new version with its lineage back to the votes, the command."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core.models import Run
from core.run_execution import run_execute
from feedback.pickapic import PickapicRow, write_parquet
from finetune.models import FineTune
from generators.models import GeneratedImage, ModelVersion, PromptSet
from rewards import services as reward_services

pytestmark = pytest.mark.django_db

TINY = {"train_steps": 4, "batch_size": 4, "checkpoint_every": 2, "eval_every": 2, "sample_steps": 4,
        "eval_images_per_prompt": 1, "grid_prompts": 2}  # fmt: skip


def _square(side: int) -> bytes:
    """A white square of ``side`` pixels on black, 32×32 PNG."""
    from PIL import Image

    image = Image.new("RGB", (32, 32))
    image.paste((255, 255, 255), (0, 0, side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def sandbox(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    call_command("sandbox_setup", stdout=io.StringIO())
    rows = []
    for p in range(6):  # the larger square wins; one tie and one "both bad" per prompt
        for k, choice in enumerate(("a", "b", "tie", "both_bad")):
            small, large = _square(6 + p), _square(16 + p + k)
            first, second = (large, small) if choice == "a" else (small, large)
            rows.append(
                PickapicRow.from_choice(choice, caption=f"a white square {p}", jpg_0=first, jpg_1=second, user_id=k)
            )
    path = tmp_path / "squares.parquet"
    write_parquet(rows, path)
    return {
        "version": ModelVersion.objects.get(base_model__name="sandbox", name="base"),
        "eval": PromptSet.objects.get(name="sandbox-eval"),
        "train": PromptSet.objects.get(name="sandbox-train"),
        "dataset": reward_services.dataset_import(name="squares", path=path),
    }


def _config(sandbox, **overrides) -> dict:
    return {
        "model_version": sandbox["version"].pk,
        "dataset": sandbox["dataset"].pk,
        "eval_prompt_set": sandbox["eval"].pk,
        "gold_oracle": "area",
        "device": "cpu",
        **TINY,
        **overrides,
    }


@pytest.mark.parametrize(
    ("algorithm", "examples"), [("diffusion_dpo", {"pairs": 12}), ("diffusion_kto", {"liked": 12})]
)
def test_a_preference_run_makes_a_child_version_traced_to_its_votes(sandbox, client_for, users, algorithm, examples):
    body = {"kind": "preference_tune", "config": _config(sandbox, algorithm=algorithm)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]

    assert run_execute(run_id=run_id, worker="inline") == "succeeded", Run.objects.get(pk=run_id).error

    run = Run.objects.get(pk=run_id)
    version = ModelVersion.objects.get(pk=run.result["model_version"])
    prefix = {"diffusion_dpo": "dpo", "diffusion_kto": "kto"}[algorithm]
    assert version.name == f"{prefix}-{run_id}" and version.parent == sandbox["version"]
    assert version.produced_by_run == run and version.adapter.name == "pytorch_lora_weights.safetensors"
    finetune = FineTune.objects.get(run=run)
    assert finetune.algorithm == algorithm and finetune.dataset == sandbox["dataset"]
    assert finetune.reward_model is None and "history" not in finetune.summary
    assert examples.items() <= run.result["examples"].items()
    dropped = {"diffusion_dpo": {"tie": 6, "both_bad": 6}, "diffusion_kto": {"tie": 6}}[algorithm]
    assert run.result["dropped"] == dropped
    assert run.result["eval_gold_reward_before"] is not None and run.result["final_implicit_accuracy"] is not None
    keys = set(run.metric_points.values_list("key", flat=True))
    assert {"loss", "implicit_accuracy", "reward_margin", "kl_proxy", "eval_gold_reward_mean"} <= keys
    assert run.artifacts.filter(name="eval_grid.png").exists()

    generate = {"model_versions": [version.pk], "prompt_set": sandbox["eval"].pk, "steps": 4}
    gen_run = client_for("engineer").post("/api/v1/runs/", {"kind": "generate", "config": generate}, format="json")
    assert run_execute(run_id=gen_run.json()["id"], worker="inline") == "succeeded"
    assert GeneratedImage.objects.filter(model_version=version).count() == sandbox["eval"].prompts.count()


def test_a_second_run_on_the_same_images_reads_the_latent_cache(sandbox):
    from core import services as run_services

    runs = [run_services.run_create(kind="preference_tune", config=_config(sandbox, name=f"v{k}")) for k in (1, 2)]
    for run in runs:
        assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    first, second = (Run.objects.get(pk=run.pk).result["images_encoded"] for run in runs)
    # The decided votes show squares of sides 6-11 and 16-22 (13 distinct images), each encoded once.
    assert first == 13 and second == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"beta": 0}, "beta"),
        ({"algorithm": "ddpo"}, "algorithm"),
        ({"ties": "coin"}, "ties"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"train_steps": 0}, "train_steps"),
        ({"surprise": 1}, "surprise"),
        ({"dataset": 999}, "dataset"),
        ({"model_version": 999}, "model_version"),
        ({"gold_oracle": "os.system"}, "gold_oracle"),
        ({"campaigns": [1]}, "campaigns"),
        ({"criterion": "overall"}, "criterion"),
    ],
)
def test_bad_configs_are_400_naming_the_field(sandbox, client_for, users, overrides, field):
    body = {"kind": "preference_tune", "config": _config(sandbox, **overrides)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and field in response.json()["config"], response.json()


def test_a_flow_matching_model_is_refused_with_what_to_use_instead(sandbox, client_for, users):
    flow = ModelVersion.objects.get(base_model__name="sandbox-flow", name="base")
    body = {"kind": "preference_tune", "config": _config(sandbox, model_version=flow.pk)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400
    message = response.json()["config"]["model_version"][0]
    assert "sandbox-flow/base is a flow-matching model (StableDiffusion3Pipeline)" in message
    assert "finetune run (Flow-GRPO" in message


def test_the_eval_prompt_set_must_be_an_eval_set_and_annotators_cannot_start_it(sandbox, client_for, users):
    body = {"kind": "preference_tune", "config": _config(sandbox, eval_prompt_set=sandbox["train"].pk)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and "eval_prompt_set" in response.json()["config"]
    for role in ("annotator", "reviewer"):
        body = {"kind": "preference_tune", "config": _config(sandbox)}
        assert client_for(role).post("/api/v1/runs/", body, format="json").status_code == 403


def test_votes_that_cannot_train_fail_the_run_readably(sandbox, tmp_path):
    from core import services as run_services

    rows = [PickapicRow.from_choice("tie", caption="p", jpg_0=_square(4), jpg_1=_square(9)) for _ in range(3)]
    write_parquet(rows, tmp_path / "ties.parquet")
    ties = reward_services.dataset_import(name="ties", path=tmp_path / "ties.parquet")
    run = run_services.run_create(kind="preference_tune", config=_config(sandbox, dataset=ties.pk))
    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    assert "no training examples for diffusion_dpo in these votes (left out: 3 tie)" in Run.objects.get(pk=run.pk).error


def test_the_command_starts_a_run(sandbox, users):
    out = io.StringIO()
    call_command(
        "preference_tune",
        "--model-version",
        str(sandbox["version"].pk),
        "--dataset",
        str(sandbox["dataset"].pk),
        "--algorithm",
        "diffusion_kto",
        "--set",
        "train_steps=2",
        "--set",
        "sample_steps=2",
        "--device",
        "cpu",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert '"kind": "preference_tune"' in out.getvalue()
    run = Run.objects.get(kind="preference_tune")
    assert run.config["algorithm"] == "diffusion_kto" and run.config["train_steps"] == 2
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    assert FineTune.objects.get(run=run).algorithm == "diffusion_kto"

"""The ``reward_train`` and ``evaluate`` runs through the platform: REST validation, execution, stored results."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from core.models import Run
from core.run_execution import run_execute
from feedback.pickapic import PickapicRow, write_parquet
from rewards import services
from rewards.models import ImageScore, RewardModel

pytestmark = pytest.mark.django_db


def _bright(level: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (level, level, level)).save(buffer, format="PNG")
    return buffer.getvalue()


def _dataset(tmp_path, name="bright", ties_only=False):
    """12 prompts × 4 rows: the brighter image wins (or every row is a tie)."""
    rows = []
    for p in range(12):
        for k in range(4):
            low, high = _bright(20 + 10 * k + p), _bright(200 - 5 * k - p)
            choice = "tie" if ties_only else ("a" if k % 2 else "b")
            first, second = (high, low) if choice == "a" else (low, high)
            rows.append(PickapicRow.from_choice(choice, caption=f"prompt {p}", jpg_0=first, jpg_1=second, user_id=k))
    path = tmp_path / f"{name}.parquet"
    write_parquet(rows, path)
    return services.dataset_import(name=name, path=path)


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path


def _train_config(dataset, /, **overrides) -> dict:
    return {"dataset": dataset.pk, "max_steps": 6, "eval_every": 3, "batch_size": 16, "warmup_steps": 1, **overrides}


def test_reward_train_run_records_a_reward_model_with_its_metrics_and_folder(media, client_for, users):
    dataset = _dataset(media)
    response = client_for("engineer").post(
        "/api/v1/runs/", {"kind": "reward_train", "config": _train_config(dataset, name="rm")}, format="json"
    )
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.queue == "gpu" and run.config["backbone"] == "sandbox"

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error

    run.refresh_from_db()
    reward_model = RewardModel.objects.get(name="rm")
    assert run.result["reward_model"] == reward_model.pk and run.result["dataset"] == dataset.pk
    assert reward_model.training_run == run and reward_model.artifact.name == "reward_model.zip"
    assert 0.0 <= run.result["test_accuracy"] <= 1.0 and run.result["baseline_test_accuracy"] is not None
    assert {"loss", "lr"} <= set(run.metric_points.values_list("key", flat=True))
    assert client_for("reviewer").get(f"/api/v1/reward-models/{reward_model.pk}/").json()["dataset"] == dataset.pk

    from rewards.loading import reward_function_for

    scores = reward_function_for(reward_model, device="cpu")(["prompt 0", "prompt 0"], [_image(250), _image(10)])
    assert len(scores) == 2


def _image(level: int):
    from PIL import Image

    return Image.new("RGB", (32, 32), (level, level, level))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"lr": 5}, "lr"),
        ({"max_steps": 0}, "max_steps"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"unknown": 1}, "unknown"),
        ({"dataset": 999}, "dataset"),
        ({"campaigns": []}, "campaigns"),
        ({"val_fraction": 0.0}, "val_fraction"),
    ],
)
def test_bad_reward_train_configs_are_400_naming_the_field(media, client_for, users, overrides, field):
    dataset = _dataset(media)
    body = {"kind": "reward_train", "config": _train_config(dataset, **overrides)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and field in response.json()["config"], response.json()


def test_all_ties_fail_the_run_with_a_readable_message(media, users):
    from core import services as run_services

    dataset = _dataset(media, "ties", ties_only=True)
    run = run_services.run_create(kind="reward_train", config=_train_config(dataset))

    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    run.refresh_from_db()
    assert "ties" in run.error and "ties" in run.error.splitlines()[0]


def test_unknown_backbone_fails_the_run_clearly(media, users):
    from core import services as run_services

    dataset = _dataset(media)
    run = run_services.run_create(kind="reward_train", config=_train_config(dataset, backbone="/no/such/clip"))

    assert run_execute(run_id=run.pk, worker="inline") == "failed"
    assert "/no/such/clip" in Run.objects.get(pk=run.pk).error


def test_evaluate_run_generates_missing_images_and_stores_scores(media, client_for, users):
    from generators.models import ModelVersion, PromptSet

    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    prompt_set = PromptSet.objects.get(name="sandbox-eval")
    zero_shot = client_for("engineer").post(
        "/api/v1/reward-models/", {"name": "clip", "backbone": "sandbox"}, format="json"
    )
    assert zero_shot.status_code == 201
    config = {
        "reward_model": zero_shot.json()["id"],
        "model_versions": [version.pk],
        "prompt_set": prompt_set.pk,
        "images_per_prompt": 1,
    }
    run = client_for("engineer").post("/api/v1/runs/", {"kind": "evaluate", "config": config}, format="json").json()

    assert run_execute(run_id=run["id"], worker="inline") == "succeeded"

    result = Run.objects.get(pk=run["id"]).result
    prompts = prompt_set.prompts.count()
    assert result["scored_now"] == prompts and result["versions"][str(version.pk)]["n"] == prompts
    assert ImageScore.objects.filter(reward_model_id=zero_shot.json()["id"]).count() == prompts
    again = Run.objects.create(kind="evaluate", config=Run.objects.get(pk=run["id"]).config, queue="gpu")
    assert run_execute(run_id=again.pk, worker="inline") == "succeeded"
    assert Run.objects.get(pk=again.pk).result["scored_now"] == 0  # scores are kept, not recomputed


def test_train_reward_command_starts_a_run(media, users):
    dataset = _dataset(media)
    out = io.StringIO()
    call_command("train_reward", "--dataset", dataset.name, "--max-steps", "2", stdout=out, stderr=io.StringIO())
    assert '"kind": "reward_train"' in out.getvalue()
    assert Run.objects.get(kind="reward_train").config["max_steps"] == 2

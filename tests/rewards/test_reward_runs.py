"""The ``reward_train`` and ``evaluate`` runs through the platform: REST validation, execution, stored results."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from rest_framework import serializers

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
        "/api/v1/runs/",
        {"kind": "reward_train", "config": _train_config(dataset, name="rm", log_every=2, head="none")},
        format="json",
    )
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.queue == "gpu" and run.config["backbone"] == "sandbox"

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    # Every training setting reaches the trainer: the loss is logged every 2 steps (the default is 10).
    assert sorted(run.metric_points.filter(key="loss").values_list("step", flat=True)) == [2, 4, 6]

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


def _assert_gain_over_zero_shot(result: dict) -> None:
    """The run reports its test accuracy above zero-shot's, paired on the test pairs, with an interval."""
    gain = result["test_gain"]
    assert gain["value"] == pytest.approx(result["test_accuracy"] - result["baseline_test_accuracy"])
    assert gain["low"] <= gain["value"] <= gain["high"] and gain["items"] > gain["prompts"] >= 2


def test_a_head_reward_train_run_saves_a_model_that_scores_with_its_head(media, client_for, users):
    from rewards.config import DEFAULT_HEAD
    from rewards.loading import reward_function_for

    dataset = _dataset(media)
    config = _train_config(dataset, name="rm-head", ensemble_size=2, head_steps=40)
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.config["head"] == DEFAULT_HEAD and run.config["ensemble_size"] == 2

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert run.result["head"] == DEFAULT_HEAD and run.result["candidates"] is None
    assert run.result["test_accuracy"] >= 0.9  # the brighter image wins: easily learnt
    _assert_gain_over_zero_shot(run.result)
    assert {"val_accuracy", "temperature"} <= set(run.metric_points.values_list("key", flat=True))
    reward_model = RewardModel.objects.get(name="rm-head")
    assert reward_model.metrics["model"]["head"]["size"] == 2
    reward = reward_function_for(reward_model, device="cpu")
    assert reward.model.head is not None
    bright, dark = reward(["prompt 0", "prompt 0"], [_image(250), _image(10)])
    assert bright > dark


def test_a_search_run_records_every_candidate_and_keeps_the_best_by_validation(media, users):
    from core import services as run_services
    from rewards.config import RewardTrainConfig
    from rewards.head_train import search_candidates

    dataset = _dataset(media)
    run = run_services.run_create(
        kind="reward_train", config=_train_config(dataset, search=True, ensemble_size=2, head_steps=20)
    )
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    candidates = run.result["candidates"]
    names = [c.name for c in search_candidates(RewardTrainConfig(head_steps=20))]
    assert [c["name"] for c in candidates] == names and "finetune-whole" in names and "linear" in names
    best = max(candidates, key=lambda c: (c["val_accuracy"], -c["val_log_loss"]))
    assert run.result["chosen"] == best["name"] and run.result["val_accuracy"] == best["val_accuracy"]
    assert all(0 <= c["val_accuracy"] <= 1 and c["seconds"] >= 0 for c in candidates)
    assert run.metric_points.filter(key="candidate_val_accuracy").count() == len(names)
    _assert_gain_over_zero_shot(run.result)


def test_a_heads_search_chooses_by_cross_validation_and_fits_only_the_winner(media, users):
    from core import services as run_services

    dataset = _dataset(media)
    config = _train_config(dataset, search=True, search_grid="heads", search_folds=3, ensemble_size=2, head_steps=20)
    run = run_services.run_create(kind="reward_train", config=config)
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    result, candidates = run.result, run.result["candidates"]
    assert result["selected_by"] == "cross_validation"
    best = max(candidates, key=lambda c: (c["cv_accuracy"], -c["cv_log_loss"]))
    assert result["chosen"] == best["name"] and all(c["cv_folds"] == 3 for c in candidates)
    fitted = [c["name"] for c in candidates if c["val_accuracy"] is not None]
    assert fitted == [best["name"]] and result["val_accuracy"] == best["val_accuracy"]
    assert run.metric_points.filter(key="candidate_cv_accuracy").count() == len(candidates)
    # The winner is fitted on the training and validation pairs together; its validation figures are the
    # cross-validation's out-of-fold ones and its tie threshold theirs.
    refit, metrics = result["refit"], RewardModel.objects.get(training_run=run).metrics
    assert (
        metrics["fitted_on"] == "train+validation" and refit["pairs"] == result["train_pairs"] == metrics["train_pairs"]
    )
    assert metrics["val_pairs"] > 0 and metrics["test_pairs"] > 0
    assert result["val_accuracy"] == best["cv_accuracy"] and refit["test_accuracy"] == result["test_accuracy"]
    assert refit["threshold"] == metrics["threshold"] and refit["calibrated_on"] == "out_of_bag"
    assert metrics["model"]["head"]["temperature"] == pytest.approx(refit["temperature"])
    _assert_gain_over_zero_shot(result)


def test_a_heads_search_without_refit_fits_the_winner_on_the_training_split(media, users):
    from core import services as run_services

    dataset = _dataset(media)
    config = _train_config(
        dataset, search=True, search_grid="heads", search_folds=3, search_refit=False, ensemble_size=2, head_steps=20
    )
    run = run_services.run_create(kind="reward_train", config=config)
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error
    result = Run.objects.get(pk=run.pk).result
    metrics = RewardModel.objects.get(training_run=run).metrics
    assert result["selected_by"] == "cross_validation" and result["refit"] is None and "fitted_on" not in metrics
    chosen = next(c for c in result["candidates"] if c["name"] == result["chosen"])
    assert chosen["val_accuracy"] is not None and result["val_accuracy"] == chosen["val_accuracy"]


def test_a_heads_search_tries_only_the_frozen_backbone_heads():
    from rewards.config import RewardTrainConfig, RewardTrainConfigError
    from rewards.head_train import search_candidates

    every = [c.name for c in search_candidates(RewardTrainConfig())]
    heads = [c.name for c in search_candidates(RewardTrainConfig(search_grid="heads"))]
    assert heads == [name for name in every if not name.startswith("finetune-")] and "patch_mlp" in heads
    with pytest.raises(RewardTrainConfigError, match="search_grid"):
        RewardTrainConfig(search_grid="everything")
    with pytest.raises(RewardTrainConfigError, match="search_folds"):
        RewardTrainConfig(search_folds=1)


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
        ({"head": "transformer"}, "head"),
        ({"ensemble_size": 0}, "ensemble_size"),
        ({"ensemble_size": 33}, "ensemble_size"),
        ({"head_lr": 0}, "head_lr"),
        ({"search": "yes"}, "search"),
        ({"calibrate": 1}, "calibrate"),
        ({"search_refit": "no"}, "search_refit"),
        ({"head_steps": 0}, "head_steps"),
    ],
)
def test_bad_reward_train_configs_are_400_naming_the_field(media, client_for, users, overrides, field):
    dataset = _dataset(media)
    body = {"kind": "reward_train", "config": _train_config(dataset, **overrides)}
    response = client_for("engineer").post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400 and field in response.json()["config"], response.json()


# One non-default value per RewardTrainConfig field that a run sets (the run names its backbone itself).
EVERY_TRAINING_SETTING = {
    "processor": "openai/clip-vit-base-patch32",
    "trainable_layers": 2,
    "lr": 2e-4,
    "weight_decay": 0.3,
    "warmup_steps": 5,
    "max_steps": None,
    "epochs": 2.5,
    "batch_size": 32,
    "grad_clip": None,
    "scheduler": "linear",
    "seed": 7,
    "mixed_precision": "bf16",
    "eval_every": 10,
    "checkpoint_every": 20,
    "log_every": 5,
    "eval_batch_size": 128,
    "device": "cpu",
    "deterministic": True,
    "head": "mlp",
    "search": True,
    "search_grid": "heads",
    "search_folds": 3,
    "search_refit": False,
    "ensemble_size": 3,
    "calibrate": False,
    "head_steps": 50,
    "head_lr": 1e-2,
    "head_weight_decay": 0.5,
    "head_hidden": 64,
    "head_dropout": 0.2,
    "head_batch_size": 64,
}


def test_every_trainer_setting_is_settable_through_a_reward_train_run(media, client_for, users):
    from rewards.config import RewardTrainConfig

    assert set(EVERY_TRAINING_SETTING) == set(RewardTrainConfig.field_names()) - {"backbone"}
    dataset = _dataset(media)
    config = {"dataset": dataset.pk, **EVERY_TRAINING_SETTING}
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")

    assert response.status_code == 201, response.json()
    stored = Run.objects.get(pk=response.json()["id"]).config
    assert {name: stored[name] for name in EVERY_TRAINING_SETTING} == EVERY_TRAINING_SETTING
    kinds = {kind["name"]: kind for kind in client_for("engineer").get("/api/v1/run-kinds/").json()}
    assert set(EVERY_TRAINING_SETTING) <= set(kinds["reward_train"]["config_fields"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"log_every": 0}, "log_every"),
        ({"eval_batch_size": 10**30}, "eval_batch_size"),
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"epochs": 1e30, "max_steps": None}, "epochs"),
        ({"epochs": 2.0}, "max_steps"),
        ({"processor": ""}, "processor"),
        ({"grad_clip": 0}, "grad_clip"),
        ({"lr": 0.9, "weight_decay": "heavy"}, "weight_decay"),
        ({"deterministic": "yes"}, "deterministic"),
    ],
)
def test_a_bad_training_setting_is_400_naming_it_with_what_it_accepts(media, client_for, users, overrides, field):
    config = _train_config(_dataset(media), **overrides)
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "reward_train", "config": config}, format="json")

    assert response.status_code == 400, response.json()
    assert list(response.json()["config"]) == [field]
    assert "must" in response.json()["config"][field][0] or "set exactly one" in response.json()["config"][field][0]


PROBES = [None, True, "1", -1, 0, 1e-9, 0.5, 1, 1.5, 2, 10, 11, 100, 101, 4096, 4097, 10_000, 10_001, 10**6]
PROBES += [10**6 + 1, 10**7, 10**7 + 1, 2**31 - 1, 2**31, 1e6, 1e6 + 1, 10**30]


def test_the_run_config_accepts_exactly_what_the_trainer_accepts(media, users):
    """One definition of the ranges: probing every setting, the run config and the trainer agree."""
    from core import run_kinds
    from rewards.config import RewardTrainConfig, RewardTrainConfigError

    dataset, kind = _dataset(media), run_kinds.get("reward_train")
    disagreements = []
    for name in set(RewardTrainConfig.field_names()) - {"backbone"}:
        for value in PROBES:
            settings = {name: value, "max_steps": None} if name == "epochs" else {name: value}
            try:
                RewardTrainConfig.from_dict(settings)
                trainer_accepts = True
            except RewardTrainConfigError:
                trainer_accepts = False
            try:
                kind.validate_config({"dataset": dataset.pk, **settings})
                run_accepts = True
            except serializers.ValidationError:
                run_accepts = False
            if trainer_accepts != run_accepts:
                disagreements.append((name, value, trainer_accepts, run_accepts))
    assert not disagreements


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


def test_evaluate_scores_the_images_of_its_sampler_settings_only(media, client_for, users):
    from generators.models import GeneratedImage, ModelVersion, PromptSet

    call_command("sandbox_setup", stdout=io.StringIO())
    version = ModelVersion.objects.get(base_model__name="sandbox", name="base")
    prompt_set = PromptSet.objects.get(name="sandbox-eval")
    prompts = prompt_set.prompts.count()
    reward_model = (
        client_for("engineer")
        .post("/api/v1/reward-models/", {"name": "clip", "backbone": "sandbox"}, format="json")
        .json()["id"]
    )
    base_config = {"reward_model": reward_model, "model_versions": [version.pk], "prompt_set": prompt_set.pk}
    results = {}
    for steps in (3, 2):  # the 3-step images are made first (lower ids), then the 2-step ones
        config = {**base_config, "images_per_prompt": 1, "steps": steps}
        run = client_for("engineer").post("/api/v1/runs/", {"kind": "evaluate", "config": config}, format="json")
        assert run.status_code == 201, run.json()
        assert run_execute(run_id=run.json()["id"], worker="inline") == "succeeded"
        results[steps] = Run.objects.get(pk=run.json()["id"]).result

    for result in results.values():
        assert result["scored_now"] == prompts and result["versions"][str(version.pk)]["n"] == prompts
    assert GeneratedImage.objects.count() == 2 * prompts
    scored_steps = ImageScore.objects.filter(reward_model_id=reward_model).values_list("image__settings", flat=True)
    assert sorted(settings["steps"] for settings in scored_steps) == [2] * prompts + [3] * prompts
    bad = {**base_config, "steps": 0}
    response = client_for("engineer").post("/api/v1/runs/", {"kind": "evaluate", "config": bad}, format="json")
    assert response.status_code == 400 and "steps" in response.json()["config"]


def test_train_reward_command_starts_a_run(media, users):
    dataset = _dataset(media)
    out = io.StringIO()
    call_command("train_reward", "--dataset", dataset.name, "--max-steps", "2", stdout=out, stderr=io.StringIO())
    assert '"kind": "reward_train"' in out.getvalue()
    assert Run.objects.get(kind="reward_train").config["max_steps"] == 2


def test_train_reward_command_takes_every_training_setting(media, users):
    from django.core.management.base import CommandError

    dataset = _dataset(media)
    options = ["--dataset", dataset.name, "--max-steps", "null", "--epochs", "1.5", "--scheduler", "linear"]
    options += ["--log-every", "2", "--checkpoint-every", "4", "--deterministic", "true"]
    call_command("train_reward", *options, stdout=io.StringIO(), stderr=io.StringIO())
    config = Run.objects.get(kind="reward_train").config
    assert (config["max_steps"], config["epochs"], config["scheduler"]) == (None, 1.5, "linear")
    assert (config["log_every"], config["checkpoint_every"], config["deterministic"]) == (2, 4, True)
    with pytest.raises(CommandError, match="log_every"):
        call_command("train_reward", "--dataset", dataset.name, "--log-every", "0", stderr=io.StringIO())

"""Training: config validation, data errors, cancel + exact resume, best checkpoint, result summary."""

from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import load_file

from core.jobs import JobCancelled, JobFailed
from generators.sandbox import CLIP_PATH
from rewards.data import PreferencePair, RewardDataError, split_by_prompt
from rewards.model import RewardModelError
from rewards.train import MemoryCallbacks, RewardTrainConfig, RewardTrainConfigError, train_reward_model
from tests.rewards.pairs_support import area_pairs


@pytest.fixture(scope="module")
def small_pairs() -> list[PreferencePair]:
    return area_pairs()


FAST = {
    "backbone": str(CLIP_PATH),
    "head": "none",  # these tests are about the CLIP fine-tune (the heads: tests/rewards/test_heads.py)
    "max_steps": 12,
    "batch_size": 8,
    "eval_every": 4,
    "log_every": 1,
    "warmup_steps": 2,
    "lr": 1e-3,
}


@pytest.fixture(scope="module")
def splits(small_pairs):
    return split_by_prompt(small_pairs, val_fraction=0.25, test_fraction=0.25, seed=0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lr": 0}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_steps": None}, "max_steps"),
        ({"max_steps": 10, "epochs": 2.0}, "max_steps"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"trainable_layers": -2}, "trainable_layers"),
        ({"scheduler": "step"}, "scheduler"),
        ({"device": "tpu"}, "device"),
        ({"grad_clip": 0}, "grad_clip"),
        ({"warmup_steps": 1.5}, "warmup_steps"),
        ({"backbone": ""}, "backbone"),
        ({"deterministic": "yes"}, "deterministic"),
        ({"learning_rate": 1e-3}, "learning_rate"),
        ({"head": "big"}, "head"),
        ({"ensemble_size": 0}, "ensemble_size"),
        ({"head_dropout": 0.95}, "head_dropout"),
        ({"head_hidden": 4}, "head_hidden"),
        ({"head_batch_size": 0}, "head_batch_size"),
        ({"head_weight_decay": -1}, "head_weight_decay"),
    ],
)
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(RewardTrainConfigError, match=f"^{field}: "):
        RewardTrainConfig.from_dict(changes)


def test_fp16_on_cpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RewardTrainConfigError, match="^mixed_precision: fp16 needs a CUDA device"):
        RewardTrainConfig(backbone=str(CLIP_PATH), mixed_precision="fp16").validate()


def test_unknown_backbone_no_pairs_and_all_ties_are_clear_errors(splits):
    with pytest.raises(RewardModelError, match="cannot load a CLIP backbone from 'nobody/unknown-clip'"):
        train_reward_model(RewardTrainConfig(**{**FAST, "backbone": "nobody/unknown-clip"}), splits.train, splits.val)
    with pytest.raises(RewardDataError, match="no preference pairs in the training set"):
        train_reward_model(RewardTrainConfig(**FAST), [], splits.val)
    with pytest.raises(RewardDataError, match="no preference pairs in the validation set"):
        train_reward_model(RewardTrainConfig(**FAST), splits.train, [])
    ties = [PreferencePair(p.prompt, p.image_a, p.image_b, 0.5, 0.5) for p in splits.train]
    with pytest.raises(RewardDataError, match="training pairs are ties: nothing decisive to learn from"):
        train_reward_model(RewardTrainConfig(**FAST), ties, splits.val)


def _checkpoint(payload: bytes) -> dict:
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def test_resume_is_exact(splits, tmp_path):
    config = RewardTrainConfig(**FAST)
    # Straight: stop at step 10 (checkpoint taken there), then finish.
    straight = MemoryCallbacks(stop_after_step=10)
    with pytest.raises(JobCancelled, match="stopped at step 10 of 12"):
        train_reward_model(config, splits.train, splits.val, splits.test, straight)
    # Interrupted at step 3 (mid-epoch, between checkpoints), resumed in fresh objects to step 10.
    first = MemoryCallbacks(stop_after_step=3)
    with pytest.raises(JobCancelled):
        train_reward_model(config, splits.train, splits.val, splits.test, first)
    assert _checkpoint(first.checkpoint)["step"] == 3
    second = MemoryCallbacks(checkpoint=first.checkpoint, stop_after_step=10)
    with pytest.raises(JobCancelled):
        train_reward_model(config, splits.train, splits.val, splits.test, second)
    a, b = _checkpoint(straight.checkpoint), _checkpoint(second.checkpoint)
    assert a["step"] == b["step"] == 10
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["best"]["model"][k], b["best"]["model"][k]) for k in a["model"])
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(state_a[i]["exp_avg_sq"], state_b[i]["exp_avg_sq"]) for i in state_a)
    assert a["scheduler"] == b["scheduler"]

    # Both finish to identical saved models and the same metrics.
    results = []
    for name, payload in (("a", straight.checkpoint), ("b", second.checkpoint)):
        results.append(
            train_reward_model(
                config, splits.train, splits.val, splits.test, MemoryCallbacks(payload), output_dir=str(tmp_path / name)
            )
        )
    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert results[0]["test"] == results[1]["test"] and results[0]["resumed_from_step"] == 10


def test_resume_refuses_other_data_or_settings(splits):
    callbacks = MemoryCallbacks(stop_after_step=2)
    config = RewardTrainConfig(**FAST)
    with pytest.raises(JobCancelled):
        train_reward_model(config, splits.train, splits.val, (), callbacks)
    with pytest.raises(JobFailed, match="different training/validation data"):
        train_reward_model(config, splits.train[1:], splits.val, (), MemoryCallbacks(callbacks.checkpoint))
    with pytest.raises(JobFailed, match="different training settings"):
        other = RewardTrainConfig(**{**FAST, "lr": 2e-3})
        train_reward_model(other, splits.train, splits.val, (), MemoryCallbacks(callbacks.checkpoint))


def test_result_summary_metrics_and_progress(splits, tmp_path):
    callbacks = MemoryCallbacks()
    config = RewardTrainConfig(**{**FAST, "trainable_layers": 1, "epochs": 2.0, "max_steps": None})
    result = train_reward_model(config, splits.train, splits.val, splits.test, callbacks, output_dir=str(tmp_path))
    json.dumps(result, allow_nan=False)
    assert result["steps"] == 2 * (len(splits.train) // 8) and result["epochs"] == pytest.approx(2.0)
    for key in ("val_accuracy", "test_accuracy", "baseline_val_accuracy", "baseline_test_accuracy", "threshold"):
        assert isinstance(result[key], float), key
    assert result["val_accuracy"] >= result["baseline_val_accuracy"]  # step 0 (zero-shot) competes for "best"
    gain = result["test_gain"]  # paired on the test pairs, each at its own validation threshold
    assert gain["value"] == pytest.approx(result["test_accuracy"] - result["baseline_test_accuracy"])
    assert gain["low"] <= gain["value"] <= gain["high"] and gain["items"] == len(splits.test)
    assert result["pairs_per_second"] > 0 and result["human_ceiling"]["pairs"] == 0
    assert result["model"]["trainable_layers"] == 1
    logged = {k for _, values in callbacks.metrics for k in values}
    assert {"loss", "lr", "grad_norm", "val_accuracy", "best_val_accuracy"} <= logged
    assert callbacks.progress[-1][0] == 1.0
    assert (tmp_path / "reward_config.json").is_file()


def test_training_needs_a_backbone_the_trainer_has_no_default_one(splits):
    assert RewardTrainConfig().backbone is None
    with pytest.raises(RewardTrainConfigError, match="^backbone: required"):
        train_reward_model(RewardTrainConfig(**{**FAST, "backbone": None}), splits.train, splits.val)

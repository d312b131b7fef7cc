"""The DDPO trainer on the sandbox pipeline (CPU): on-policy ratio, exact resume, the saved adapter, cancel, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from core.jobs import JobCancelled, JobFailed
from finetune import checkpoint as ckpt
from finetune.config import ConfigError
from finetune.lora import WEIGHT_NAME, lora_state_dict
from finetune.trainer import DDPOTrainer
from tests.finetune.ddpo_support import (
    EVAL_PROMPTS,
    PIPELINE,
    TINY,
    TRAIN_PROMPTS,
    RecordingContext,
    area,
    sandbox_pipeline_images,
)

EVAL = EVAL_PROMPTS[:4]


def _trainer(ctx, output_dir=None, reward=area, **overrides) -> DDPOTrainer:
    return DDPOTrainer(PIPELINE, {**TINY, **overrides}, reward, TRAIN_PROMPTS, EVAL, ctx, output_dir)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """Two epochs in one go (shared by several tests)."""
    ctx = RecordingContext()
    output = tmp_path_factory.mktemp("adapter")
    trainer = _trainer(ctx, output)
    result = trainer.train()
    return trainer, result, ctx


def test_first_ppo_ratio_is_exactly_one_on_fresh_samples(straight_run):
    trainer, result, _ = straight_run
    for epoch in result.summary["history"]:
        assert epoch["first_ratio_max_deviation"] == 0.0
    assert result.summary["history"][0]["optimizer_steps"] == 2 * trainer.config.inner_epochs  # 2 per pass


def test_run_reports_metrics_progress_grid_and_summary(straight_run):
    _, result, ctx = straight_run
    steps = {step for step, values in ctx.metrics if "reward_mean" in values}
    assert steps == {1, 2}
    keys = {k for _, values in ctx.metrics for k in values}
    for key in ("reward_mean", "reward_std", "advantage_std", "approx_kl", "clip_fraction", "kl_to_base"):
        assert key in keys
    assert {"learning_rate", "seconds_sampling", "seconds_training", "eval_reward_mean"} <= keys
    assert ctx.progress[-1] == 1.0
    grid, kind, metadata = ctx.artifacts["eval_grid.png"]
    assert kind == "image" and metadata["rows"] == ["before", "after"]
    assert Image.open(io.BytesIO(grid)).size == (2 * 128, 2 * 128)
    summary = result.summary
    assert summary["eval_reward_before"] is not None and summary["eval_reward_after"] is not None
    assert [e["epoch"] for e in summary["evals"]] == [0, 2]


def test_resume_after_a_stop_gives_identical_adapter_weights(straight_run):
    straight, _, _ = straight_run
    ctx = RecordingContext()
    _trainer(ctx, epochs=1).train()  # "killed" after epoch 1: only its checkpoint survives
    assert ckpt.loads(ctx.checkpoint)["epoch"] == 1
    resumed = _trainer(RecordingContext(checkpoint=ctx.checkpoint))
    resumed.train()
    expected, got = lora_state_dict(straight.parts.unet), lora_state_dict(resumed.parts.unet)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["reward_mean"] for h in resumed.history] == [h["reward_mean"] for h in straight.history]


def test_saved_adapter_loads_in_a_plain_pipeline_and_reproduces_the_images(straight_run):
    trainer, result, _ = straight_run
    assert (result.adapter_dir / WEIGHT_NAME).exists()
    seeds = [3, 4]
    ours = trainer._sample_deterministic(EVAL[:2], seeds)
    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE)
    pipe.set_progress_bar_config(disable=True)
    before = _pipeline_images(pipe, seeds)
    pipe.load_lora_weights(str(result.adapter_dir))
    after = _pipeline_images(pipe, seeds)
    np.testing.assert_array_equal(after, ours)
    assert not np.array_equal(before, after)  # the adapter changed something


def _pipeline_images(pipe, seeds) -> np.ndarray:
    return sandbox_pipeline_images(pipe, EVAL[:2], seeds, TINY["steps"])


def test_cancel_raises_after_the_checkpoint_and_resumes_later():
    ctx = RecordingContext(stop_after=2)  # the initial checkpoint (epoch 0), then epoch 1
    with pytest.raises(JobCancelled):
        _trainer(ctx).train()
    assert ckpt.loads(ctx.checkpoint)["epoch"] == 1
    ctx.stop_after = None
    result = _trainer(ctx, epochs=2).train()
    assert result.summary["epochs"] == 2


def test_reward_function_error_is_a_readable_job_failure():
    def broken_reward(prompts, images):
        raise RuntimeError("the reward server is down")

    with pytest.raises(JobFailed, match="broken_reward.*RuntimeError: the reward server is down"):
        _trainer(RecordingContext(), reward=broken_reward).train()

    with pytest.raises(JobFailed, match="returned 1 values for"):
        _trainer(RecordingContext(), reward=lambda prompts, images: [0.5]).train()


def test_bad_config_and_mismatched_checkpoint_are_named():
    with pytest.raises(ConfigError, match="^learning_rat: unknown field"):
        _trainer(RecordingContext(), learning_rat=1e-3)
    with pytest.raises(ConfigError, match="^eval_prompts:"):
        DDPOTrainer(PIPELINE, TINY, area, TRAIN_PROMPTS, [], RecordingContext())
    ctx = RecordingContext()
    _trainer(ctx, epochs=1).train()
    with pytest.raises(JobFailed, match="different 'learning_rate'"):
        _trainer(RecordingContext(checkpoint=ctx.checkpoint), learning_rate=0.5).train()


def test_launch_spec_runs_with_a_folder_context_and_stops_on_request(tmp_path):
    from finetune.launch import run_spec

    spec = {
        "pipeline": PIPELINE,
        "config": {**TINY, "epochs": 1},
        "train_prompts": TRAIN_PROMPTS,
        "eval_prompts": EVAL[:2],
        "reward": {"target": "generators.sandbox.oracles:area_reward", "per_image": True},
        "output_dir": str(tmp_path / "adapter"),
        "work_dir": str(tmp_path / "job"),
    }
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "STOP").touch()
    assert run_spec(spec)["status"] == "cancelled"
    (tmp_path / "job" / "STOP").unlink()
    record = run_spec(spec)
    assert record["status"] == "succeeded" and record["summary"]["epochs"] == 1
    assert (tmp_path / "adapter" / WEIGHT_NAME).exists()
    assert (tmp_path / "job" / "artifacts" / "eval_grid.png").exists()
    assert (tmp_path / "job" / "metrics.jsonl").read_text().count("\n") >= 2
    bad = run_spec({**spec, "config": {"epochs": -1}, "work_dir": str(tmp_path / "bad")})
    assert bad == {"status": "failed", "message": "epochs: must be ≥ 1"}

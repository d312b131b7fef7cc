"""The Diffusion-DPO / KTO trainer on the sandbox pipeline (CPU): examples from votes, learning, exact resume, the
saved adapter in a plain diffusers pipeline, cancel, bad settings."""

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
from finetune.preference_data import LatentCache, PreferenceDataError, build_examples, image_key
from finetune.preference_sandbox import Row
from finetune.preference_trainer import CHECKPOINT_FORMAT, PreferenceTrainer
from generators.sandbox.evaluate import generate, load_pipeline
from generators.sandbox.oracles import area_reward
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TRAIN_PROMPTS, RecordingContext, sandbox_pipeline_images

EVAL = EVAL_PROMPTS[:2]
TINY = {
    "train_steps": 6,
    "batch_size": 4,
    "checkpoint_every": 3,
    "eval_every": 0,
    "eval_images_per_prompt": 1,
    "sample_steps": 4,
    "grid_prompts": 2,
}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def votes() -> list[Row]:
    """Two images for each of 12 train prompts, voted by the area oracle (the larger shape wins; close: a tie)."""
    prompts = [p for p in TRAIN_PROMPTS[:12] for _ in range(2)]
    pixels = generate(load_pipeline(PIPELINE), prompts, list(range(len(prompts))), steps=8)
    rows = []
    for i in range(0, len(prompts), 2):
        a, b = area_reward(prompts[i], pixels[i]), area_reward(prompts[i], pixels[i + 1])
        label = 0.5 if abs(a - b) < 0.02 else float(a > b)
        rows.append(Row(prompts[i], _png(pixels[i]), _png(pixels[i + 1]), label, 1 - label))
    assert any(r.label_0 != r.label_1 for r in rows)
    return rows


def _trainer(votes, ctx, algorithm="diffusion_dpo", output_dir=None, **overrides) -> PreferenceTrainer:
    examples = build_examples(votes, algorithm)
    config = {**TINY, "algorithm": algorithm, **overrides}
    return PreferenceTrainer(PIPELINE, config, examples, EVAL, ctx, output_dir)


@pytest.fixture(scope="module")
def straight_run(votes, tmp_path_factory):
    ctx = RecordingContext()
    trainer = _trainer(votes, ctx, output_dir=tmp_path_factory.mktemp("adapter"))
    return trainer, trainer.train(), ctx


# ------------------------------------------------------------------------------------------------ examples
def _row(caption, a: bytes, b: bytes, label_0: float, both_bad=False) -> Row:
    return Row(caption, a, b, label_0, 1 - label_0, both_bad)


def test_examples_follow_the_tie_and_both_bad_rules():
    a, b, c = b"image-a", b"image-b", b"image-c"
    rows = [
        _row("p", a, b, 1.0),
        _row("p", a, b, 0.0),
        _row("q", b, c, 0.5),
        _row("q", a, c, 0.5, both_bad=True),
    ]
    dpo = build_examples(rows, "diffusion_dpo")
    assert [(e.winner, e.loser, e.label) for e in dpo.dpo] == [
        (image_key(a), image_key(b), 1.0),
        (image_key(b), image_key(a), 1.0),
    ]
    assert dpo.dropped == {"tie": 1, "both_bad": 1} and set(dpo.images) == {image_key(a), image_key(b)}
    soft = build_examples(rows, "diffusion_dpo", ties="soft")
    assert [e.label for e in soft.dpo] == [1.0, 1.0, 0.5, 0.5] and len(soft.images) == 3
    kto = build_examples(rows, "diffusion_kto")
    assert [(e.image, e.desirable) for e in kto.kto] == [
        (image_key(a), True),
        (image_key(b), False),
        (image_key(b), True),
        (image_key(a), False),
        (image_key(a), False),  # both bad: two dislikes
        (image_key(c), False),
    ]
    assert kto.dropped == {"tie": 1} and kto.counts() == {"liked": 2, "disliked": 4, "images": 3}


def test_votes_that_cannot_train_are_a_readable_error():
    ties = [_row("p", b"x", b"y", 0.5), _row("p", b"x", b"y", 0.5, both_bad=True)]
    with pytest.raises(PreferenceDataError, match=r"no training examples for diffusion_dpo.*1 both_bad, 1 tie"):
        build_examples(ties, "diffusion_dpo")
    with pytest.raises(PreferenceDataError, match="every vote is a tie"):
        build_examples(ties, "diffusion_dpo", ties="soft")
    with pytest.raises(PreferenceDataError, match="unknown algorithm"):
        build_examples(ties, "ddpo")


def test_the_latent_cache_encodes_each_image_once_and_reads_its_folder_back(votes, tmp_path):
    vae = load_pipeline(PIPELINE).vae
    images = build_examples(votes, "diffusion_kto").images
    first = LatentCache(vae, (32, 32), torch.device("cpu"), tmp_path, vae_fingerprint="v")
    first.fill(images, batch_size=5)
    first.fill(images)
    assert first.encoded == len(images) and len(list((tmp_path / "v-32x32").glob("*.pt"))) == len(images)
    second = LatentCache(vae, (32, 32), torch.device("cpu"), tmp_path, vae_fingerprint="v")
    second.fill(images)
    assert second.encoded == 0
    for key in images:
        assert torch.equal(first.latents[key], second.latents[key])


# ------------------------------------------------------------------------------------------------- training
def test_dpo_learns_the_training_pairs(votes):
    trainer = _trainer(votes, RecordingContext(), train_steps=40, beta=500.0, learning_rate=3e-3)
    rows = list(range(len(trainer.examples)))
    assert trainer.implicit_accuracy(rows, seed=5) == 0.0  # a fresh adapter is the reference itself
    trainer.train()
    assert trainer.implicit_accuracy(rows, seed=5) >= 0.75


def test_kto_learns_its_likes_and_dislikes(votes):
    trainer = _trainer(votes, RecordingContext(), "diffusion_kto", train_steps=40, beta=500.0)
    rows = list(range(len(trainer.examples)))
    before = trainer.implicit_accuracy(rows, seed=5)
    trainer.train()
    assert trainer.implicit_accuracy(rows, seed=5) >= max(0.7, before + 0.2)


def test_run_reports_metrics_progress_grid_and_summary(straight_run):
    _, result, ctx = straight_run
    keys = {k for _, values in ctx.metrics for k in values}
    assert {"loss", "implicit_accuracy", "reward_margin", "kl_proxy", "grad_norm", "probe_implicit_accuracy"} <= keys
    assert ctx.progress[-1] == 1.0
    grid, kind, metadata = ctx.artifacts["eval_grid.png"]
    assert kind == "image" and metadata["rows"] == ["before", "after"]
    summary = result.summary
    assert summary["steps"] == 6 and summary["algorithm"] == "diffusion_dpo"
    assert [e["step"] for e in summary["evals"]] == [0, 6]
    assert summary["examples"]["pairs"] == len(straight_run[0].examples)


def test_resume_after_a_kill_gives_identical_adapter_weights(votes, straight_run):
    straight, _, _ = straight_run
    ctx = RecordingContext()
    _trainer(votes, ctx, train_steps=3).train()  # "killed" after step 3: only its checkpoint survives
    assert ckpt.loads(ctx.checkpoint, fmt=CHECKPOINT_FORMAT)["step"] == 3
    resumed = _trainer(votes, RecordingContext(checkpoint=ctx.checkpoint))
    resumed.train()
    expected, got = lora_state_dict(straight.parts.unet), lora_state_dict(resumed.parts.unet)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_saved_adapter_loads_in_a_plain_pipeline_and_reproduces_the_eval_images(straight_run):
    trainer, result, _ = straight_run
    assert (result.adapter_dir / WEIGHT_NAME).exists()
    seeds = [3, 4]
    ours = trainer.sample_eval(EVAL, seeds)
    pipe = StableDiffusionPipeline.from_pretrained(PIPELINE)
    pipe.set_progress_bar_config(disable=True)
    before = _pipeline_images(pipe, seeds)
    pipe.load_lora_weights(str(result.adapter_dir))
    after = _pipeline_images(pipe, seeds)
    np.testing.assert_array_equal(after, ours)
    assert not np.array_equal(before, after)


def _pipeline_images(pipe, seeds) -> np.ndarray:
    return sandbox_pipeline_images(pipe, EVAL, seeds, TINY["sample_steps"])


def test_cancel_stops_between_steps_and_the_run_resumes_from_its_checkpoint(votes):
    ctx = RecordingContext(stop_after=2)  # the initial checkpoint (step 0), then step 3
    with pytest.raises(JobCancelled, match="at step 3 of 6"):
        _trainer(votes, ctx).train()
    ctx.stop_after = None
    assert _trainer(votes, ctx).train().summary["steps"] == 6


def test_bad_settings_and_mismatched_checkpoints_are_named(votes):
    with pytest.raises(ConfigError, match="^bta: unknown field"):
        _trainer(votes, RecordingContext(), bta=1.0)
    with pytest.raises(ConfigError, match="^beta:"):
        _trainer(votes, RecordingContext(), beta=0)
    with pytest.raises(ConfigError, match="^ties:"):
        _trainer(votes, RecordingContext(), ties="coin")
    with pytest.raises(ConfigError, match="^algorithm: the examples were built for diffusion_kto"):
        PreferenceTrainer(PIPELINE, {**TINY}, build_examples(votes, "diffusion_kto"), EVAL, RecordingContext())
    ctx = RecordingContext()
    _trainer(votes, ctx, train_steps=3).train()
    with pytest.raises(JobFailed, match="different 'beta'"):
        _trainer(votes, RecordingContext(checkpoint=ctx.checkpoint), beta=100.0).train()
    with pytest.raises(JobFailed, match="not a 'imagerlhf-preference-checkpoint' checkpoint"):
        _trainer(votes, RecordingContext(checkpoint=ckpt.dumps({"epoch": 1}))).train()

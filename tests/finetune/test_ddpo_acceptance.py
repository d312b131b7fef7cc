"""Sandbox acceptance (short form): the default settings raise the shape-area reward on held-out eval prompts.

The full figures (3 seeds, `python -m finetune.sandbox_acceptance`) are in docs/benchmarks.md; this CI version
runs 12 epochs (about a minute on a quiet 2-core CPU) and asks for a smaller but clear gain on deterministic eval
samples.
"""

from __future__ import annotations

from finetune.trainer import DDPOTrainer
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TRAIN_PROMPTS, RecordingContext, area


def test_default_settings_raise_the_area_reward_on_eval_prompts():
    ctx = RecordingContext()
    trainer = DDPOTrainer(PIPELINE, {"epochs": 12, "eval_every": 0}, area, TRAIN_PROMPTS, EVAL_PROMPTS, ctx)
    summary = trainer.train().summary
    before, after = summary["eval_reward_before"], summary["eval_reward_after"]
    assert after - before >= 0.05, (before, after)

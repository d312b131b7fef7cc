"""Sandbox acceptance (short form): the default settings raise the eval-prompt reward, for a pixel oracle and for
a reward model learned from votes.

The full figures (80 epochs, 3 seeds, `python -m finetune.sandbox_acceptance`) are in docs/benchmarks.md; these CI
versions run 30 epochs (under a minute each on a quiet 2-core CPU) and ask for a smaller but clear gain on
deterministic eval samples. The learned reward is the rewards acceptance model (session fixture, trained once).
"""

from __future__ import annotations

from finetune.trainer import DDPOTrainer
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TRAIN_PROMPTS, RecordingContext, area

SHORT_RUN = {"epochs": 30, "eval_every": 0}


def _short_run(reward_fn, gold_fn=None) -> dict:
    trainer = DDPOTrainer(
        PIPELINE, SHORT_RUN, reward_fn, TRAIN_PROMPTS, EVAL_PROMPTS, RecordingContext(), gold_reward_fn=gold_fn
    )
    return trainer.train().summary


def test_default_settings_raise_the_area_reward_on_eval_prompts():
    summary = _short_run(area)
    before, after = summary["eval_reward_before"], summary["eval_reward_after"]
    assert after - before >= 0.05, (before, after)


def test_default_settings_raise_a_learned_reward_on_eval_prompts(sandbox_reward_experiment):
    from rewards.scoring import RewardFunction

    _, model_dir = sandbox_reward_experiment
    summary = _short_run(RewardFunction.from_directory(model_dir), gold_fn=area)
    before, after = summary["eval_reward_before"], summary["eval_reward_after"]
    gold = summary["eval_gold_reward_before"], summary["eval_gold_reward_after"]
    assert after - before >= 0.4, (before, after, gold)  # the model's scores spread about ±5 over images
    assert gold[1] > gold[0], gold  # and the preference it learned (larger shapes) rises with it

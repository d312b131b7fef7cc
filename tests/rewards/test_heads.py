"""Quick reward models: heads, ensembles, calibration, the feature cache, saving, and learning a preference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generators.sandbox import CLIP_PATH
from generators.sandbox.dataset import COLOURS, make_caption, render
from generators.sandbox.oracles import centred_reward
from rewards.config import HEAD_KINDS
from rewards.data import PreferencePair
from rewards.features import FeatureCache
from rewards.heads import HeadConfig, HeadEnsemble, HeadInputs, build_head
from rewards.metrics import decisive_accuracy, log_loss
from rewards.quick import QuickRewardModel, fit_head_ensemble, fit_quick_reward_model, fit_temperature, pair_table
from rewards.scoring import RewardFunction
from tests.rewards.pairs_support import area_pairs


@pytest.fixture(scope="module")
def features() -> FeatureCache:
    return FeatureCache(CLIP_PATH)


@pytest.fixture(scope="module")
def pairs() -> list[PreferencePair]:
    return area_pairs(n_prompts=12, per_prompt=4)


def _inputs(batch: int, dim: int, tokens: int) -> HeadInputs:
    generator = torch.Generator().manual_seed(0)
    return HeadInputs(
        torch.randn(batch, dim, generator=generator),
        torch.randn(batch, tokens, dim, generator=generator),
        torch.randn(batch, dim, generator=generator),
        torch.randn(batch, 1, generator=generator),
    )


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_every_head_scores_one_float_per_image_and_every_parameter_learns(kind):
    head = build_head(HeadConfig(kind=kind, hidden=32, dropout=0.0), dim=16, tokens=17)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    inputs = _inputs(6, 16, 17)
    before = {name: p.detach().clone() for name, p in head.named_parameters()}
    for _ in range(3):  # zero-initialised output layers pass gradients on from the second step
        scores = head(inputs)
        assert scores.shape == (6,) and torch.isfinite(scores).all()
        optimizer.zero_grad()
        (scores - torch.arange(6.0)).pow(2).mean().backward()
        optimizer.step()
    unchanged = [name for name, p in head.named_parameters() if torch.equal(before[name], p.detach())]
    assert not unchanged, f"{kind}: parameters that never moved: {unchanged}"


def test_a_feature_cache_computes_each_image_once_and_keys_by_pixels_or_caller_key(features, pairs):
    images = [pairs[0].image_a, pairs[0].image_a.copy(), pairs[0].image_b]
    before = len(features)
    stacked = features.image_features(images)
    assert len(features) - before <= 2  # the copy has the same pixels: the same key
    assert torch.equal(stacked.pooled[0], stacked.pooled[1])
    assert stacked.pooled.shape == (3, features.dim) and stacked.patches.shape == (3, features.image_tokens, 64)
    assert torch.allclose(stacked.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    by_key = features.image_features([pairs[1].image_a], keys=["image-17"])
    assert torch.equal(
        features.image_features(["not decoded: cached under its key"], keys=["image-17"]).pooled, by_key.pooled
    )


def test_ensemble_spread_is_zero_for_identical_members_and_positive_for_bootstrap_members(features, pairs):
    model = fit_quick_reward_model(
        pairs, features=features, head="mlp", ensemble_size=3, config=HeadConfig("mlp", steps=40)
    )
    table = pair_table(features, pairs)
    assert model.predict_table(table).spread.mean() > 1e-4
    for member in model.ensemble.members[1:]:
        member.load_state_dict(model.ensemble.members[0].state_dict())
    prediction = model.predict_table(table)
    assert np.abs(prediction.spread).max() < 1e-6
    assert prediction.p_a.shape == (len(pairs),) and prediction.members.shape == (3, len(pairs))


def test_fit_temperature_recovers_an_overconfident_models_scale_and_lowers_log_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, size=(1, 4000))
    labels = (rng.random(4000) < 1 / (1 + np.exp(-logits[0]))).astype(float)
    overconfident = 6.0 * logits  # scores six times too sharp
    temperature = fit_temperature(overconfident, np.zeros_like(overconfident), labels)
    assert 5.0 < temperature < 7.2
    raw = log_loss(1 / (1 + np.exp(-overconfident[0])), labels)
    calibrated = log_loss(1 / (1 + np.exp(-overconfident[0] / temperature)), labels)
    assert calibrated < raw - 0.2


def test_calibration_on_validation_lowers_its_log_loss(features, pairs):
    train, val = pairs[: len(pairs) * 2 // 3], pairs[len(pairs) * 2 // 3 :]
    train_table, val_table = pair_table(features, train), pair_table(features, val)
    config = HeadConfig("mlp", steps=150, lr=3e-2, dropout=0.0)
    raw, _ = fit_head_ensemble(train_table, config, ensemble_size=2, seed=1, calibrate=False)
    raw.temperature.fill_(0.05)  # miscalibrated: twenty times too sharp
    calibrated, info = fit_head_ensemble(train_table, config, ensemble_size=2, seed=1, val=val_table)
    assert info["calibrated_on"] == "validation" and info["temperature"] != 1.0
    labels = val_table.label_a.numpy()
    loss_raw = log_loss(QuickRewardModel(raw, features).predict_table(val_table).p_a, labels)
    loss_calibrated = log_loss(QuickRewardModel(calibrated, features).predict_table(val_table).p_a, labels)
    assert loss_calibrated < loss_raw


def test_a_saved_head_scores_identically_through_the_reward_function(features, pairs, tmp_path):
    model = fit_quick_reward_model(pairs, features=features, head="attention", ensemble_size=2, steps=30)
    model.save(tmp_path)
    reward = RewardFunction.from_directory(tmp_path)
    assert reward.model.head is not None and reward.model.config.head["size"] == 2
    prompts = [p.prompt for p in pairs[:8]]
    images = [p.image_a for p in pairs[:8]]
    np.testing.assert_allclose(reward(prompts, images), model.score(prompts, images), rtol=1e-5, atol=1e-5)
    described = HeadEnsemble.from_description(reward.model.config.head).describe()
    assert described["temperature"] == pytest.approx(model.temperature)


def _centred_world(prompts: range, per_prompt: int, seed: int) -> tuple[list[PreferencePair], dict]:
    """Renders of one shape at random places (same size); the annotator prefers the one nearer the centre (a tie
    within 0.05), 10% of votes flipped; every within-prompt pair once. Returns the votes and the true labels."""
    rng = np.random.default_rng(seed)
    names = [(c, s) for c in COLOURS for s in ("square", "circle", "cross", "triangle")]
    pairs, truth = [], {}
    for index in prompts:
        colour, shape = names[index]
        prompt = make_caption(colour, shape)
        images = [render(shape, COLOURS[colour], 10.0, tuple(rng.uniform(9, 23, size=2))) for _ in range(per_prompt)]
        rewards = [centred_reward(prompt, image) for image in images]
        for i in range(per_prompt):
            for j in range(i + 1, per_prompt):
                if abs(rewards[i] - rewards[j]) < 0.05:
                    continue
                label = float(rewards[i] > rewards[j])
                key = f"{prompt}#{i}-{j}"
                truth[key] = label
                if rng.random() < 0.1:
                    label = 1.0 - label
                pairs.append(PreferencePair(prompt, images[i], images[j], label, 1.0 - label, "sim", key))
    return pairs, truth


def test_the_default_head_learns_a_position_preference_that_zero_shot_clip_does_not_see(features):
    """~550 noisy votes on where the shape is (no caption word for it): held-out accuracy against the true
    preference ≥ 0.8 on new prompts and images, where zero-shot CLIP is near chance."""
    train, _ = _centred_world(range(22), per_prompt=8, seed=0)
    test, truth = _centred_world(range(22, 32), per_prompt=8, seed=1)
    assert 450 <= len(train) <= 650 and len(test) >= 150
    model = fit_quick_reward_model(train, features=features, ensemble_size=3, seed=0)
    table = pair_table(features, test)
    labels = [truth[p.pair_key] for p in test]
    prediction = model.predict_table(table)
    accuracy = decisive_accuracy(prediction.p_a, labels)
    zero_shot = decisive_accuracy(table.zero_shot_p_a(features.logit_scale), labels)
    print(f"default head {model.head}: accuracy {accuracy:.3f}, zero-shot {zero_shot:.3f}")
    assert zero_shot < 0.65, zero_shot
    assert accuracy >= 0.8, (accuracy, zero_shot)
    assert prediction.spread.mean() > 0


def test_prompt_folds_keep_each_prompts_pairs_together_and_cover_every_pair_once():
    from rewards.head_cv import prompt_folds

    prompt_rows = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 6])
    folds = prompt_folds(prompt_rows, 3, seed=1)
    assert len(folds) == 3 and sorted(torch.cat(folds).tolist()) == list(range(len(prompt_rows)))
    for fold in folds:
        others = torch.cat([f for f in folds if f is not fold])
        assert not set(prompt_rows[fold].tolist()) & set(prompt_rows[others].tolist())
    assert [f.tolist() for f in prompt_folds(prompt_rows, 3, seed=1)] == [f.tolist() for f in folds]
    assert len(prompt_folds(torch.tensor([0, 1, 1]), 5, seed=0)) == 2  # fewer prompts than folds
    assert prompt_folds(torch.tensor([3, 3]), 5, seed=0) == []  # one prompt: nothing to hold out


def test_cross_validation_ranks_a_head_that_sees_the_preference_above_chance(features):
    from rewards.head_cv import cross_validate_head, prompt_folds

    table = pair_table(features, area_pairs(n_prompts=16, per_prompt=4))
    folds = prompt_folds(table.prompt, 4, seed=0)
    head = HeadConfig("linear", steps=150, lr=3e-2, dropout=0.0)
    learnt = cross_validate_head(table, head, folds, seed=0)
    assert learnt.folds == 4 and learnt.p_a.shape == (len(table),) and np.isfinite(learnt.p_a).all()
    assert learnt.metrics["decisive_accuracy"] > 0.8
    shuffled = table.subset(torch.arange(len(table)))
    shuffled.label_a = shuffled.label_a[torch.randperm(len(table), generator=torch.Generator().manual_seed(0))]
    shuffled.label_b = 1.0 - shuffled.label_a
    chance = cross_validate_head(shuffled, head, folds, seed=0)
    assert chance.metrics["decisive_accuracy"] < 0.65 and chance.metrics["log_loss"] > learnt.metrics["log_loss"]

"""The CLIP reward model: loading errors, trainable layers, save/load round trip, reward functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generators.sandbox import CLIP_PATH
from generators.sandbox.oracles import area_reward
from rewards.data import PreferencePair
from rewards.model import REWARD_CONFIG_NAME, RewardModel, RewardModelError
from rewards.scoring import OracleReward, RewardFunction, load_reward_function
from tests.rewards.pairs_support import area_pairs


@pytest.fixture(scope="module")
def small_pairs() -> list[PreferencePair]:
    return area_pairs()


@pytest.fixture(scope="module")
def model() -> RewardModel:
    return RewardModel.from_pretrained(CLIP_PATH)


def test_unknown_backbone_and_bad_folder_are_clear_errors(tmp_path):
    with pytest.raises(RewardModelError, match="cannot load a CLIP backbone from 'no-such-org/no-such-clip'"):
        RewardModel.from_pretrained("no-such-org/no-such-clip")
    with pytest.raises(RewardModelError, match="cannot load a CLIP backbone"):
        RewardModel.from_pretrained(tmp_path)
    with pytest.raises(RewardModelError, match="missing-clip'.*no such folder"):
        RewardModel.from_pretrained(tmp_path / "missing-clip")
    with pytest.raises(RewardModelError, match="not a saved reward model"):
        RewardModel.load(tmp_path)
    with pytest.raises(RewardModelError, match="trainable_layers must be"):
        RewardModel.from_pretrained(CLIP_PATH, trainable_layers=-1)


def test_trainable_layers_freeze_all_but_the_last_layers_and_heads(model):
    model.set_trainable_layers(1)
    names = {n for n, _ in model.trainable_named_parameters()}
    assert "clip.logit_scale" in names and "clip.visual_projection.weight" in names
    assert any(n.startswith("clip.text_model.encoder.layers.1.") for n in names)
    assert not any(".layers.0." in n or "embeddings" in n for n in names)
    model.set_trainable_layers(0)
    assert not any(".layers." in n for n, _ in model.trainable_named_parameters())
    model.set_trainable_layers(None)
    assert len(model.trainable_named_parameters()) == len(list(model.parameters()))


def test_score_is_scaled_cosine_and_batch_size_invariant(model, small_pairs):
    prompts = [p.prompt for p in small_pairs[:10]]
    images = [p.image_a for p in small_pairs[:10]]
    scores = model.score(prompts, images, batch_size=3)
    assert scores.shape == (10,) and scores.dtype == torch.float32
    assert torch.allclose(scores, model.score(prompts, images, batch_size=64), atol=1e-5)
    assert scores.abs().max() <= model.scale().item() + 1e-4
    with pytest.raises(RewardModelError, match="need one prompt per image"):
        model.score(prompts, images[:3])


def test_save_load_round_trip_gives_identical_scores(model, small_pairs, tmp_path):
    model.set_trainable_layers(1)
    with torch.no_grad():
        model.clip.logit_scale.add_(0.25)  # differ from the backbone, so a reload from it would show
    prompts = [p.prompt for p in small_pairs[:8]]
    images = [p.image_b for p in small_pairs[:8]]
    before = model.score(prompts, images)
    model.save(tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / REWARD_CONFIG_NAME).read_text())["trainable_layers"] == 1
    loaded = RewardModel.load(tmp_path / "rm")
    assert torch.equal(loaded.score(prompts, images), before)
    assert loaded.config.backbone == str(CLIP_PATH) and loaded.config.trainable_layers == 1
    function = load_reward_function(tmp_path / "rm", batch_size=4)
    assert function(prompts, np.stack(images)) == before.tolist()
    with torch.no_grad():
        model.clip.logit_scale.sub_(0.25)


def test_zero_shot_reward_function_and_oracle_share_a_signature(small_pairs):
    prompts = [p.prompt for p in small_pairs[:4]]
    images = [p.image_a for p in small_pairs[:4]]
    zero_shot = RewardFunction.zero_shot(CLIP_PATH)
    assert zero_shot(prompts, images) == pytest.approx(load_reward_function(CLIP_PATH)(prompts, images))
    # A (N, 3, H, W) tensor in [0, 1], as the pipeline's output_type="pt" gives.
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    assert zero_shot(prompts, tensor) == pytest.approx(zero_shot(prompts, images), abs=1e-5)
    oracle = OracleReward(area_reward)
    assert oracle(prompts, images) == pytest.approx([area_reward(p, i) for p, i in zip(prompts, images, strict=True)])

"""Votes to pairs, prompt-disjoint splits, weights, the cached dataset and the data errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generators.sandbox import CLIP_PATH
from rewards.data import (
    PreferenceDataset,
    PreferencePair,
    RewardDataError,
    VoteRecord,
    check_training_pairs,
    pairs_from_pickapic,
    pairs_from_votes,
    prompt_weights,
    split_by_prompt,
)
from rewards.model import RewardModel
from tests.rewards.pairs_support import area_pairs


@pytest.fixture(scope="module")
def small_pairs() -> list[PreferencePair]:
    return area_pairs()


def vote(choice: str, prompt: str = "a red circle", annotator: str = "u1") -> VoteRecord:
    return VoteRecord(prompt, "img-a.png", "img-b.png", choice, annotator, "pair-1")


def test_votes_to_labels_skip_and_both_bad():
    votes = [vote("a"), vote("b"), vote("tie"), vote("both_bad"), vote("skip"), vote("a", annotator="spammer")]
    pairs = pairs_from_votes(votes, exclude_annotators=["spammer"])
    assert [(p.label_a, p.label_b) for p in pairs] == [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.5, 0.5)]
    assert pairs.dropped == {"skip": 1, "excluded_annotator": 1}
    strict = pairs_from_votes(votes, both_bad_as_tie=False)
    assert len(strict) == 4 and strict.dropped == {"skip": 1, "both_bad": 1}
    with pytest.raises(RewardDataError, match="unknown vote choice 'left'"):
        pairs_from_votes([vote("left")])


def test_pickapic_rows_become_pairs():
    class Row:  # the attributes of feedback.pickapic.PickapicRow that matter
        caption, jpg_0, jpg_1, label_0, label_1 = "a blue square", b"x", b"y", 0.5, 0.5
        image_0_uid, image_1_uid, user_id, both_bad = "u0", "u1", 7, True

    assert pairs_from_pickapic([Row()]) == [PreferencePair("a blue square", b"x", b"y", 0.5, 0.5, "7", "u0:u1")]
    assert pairs_from_pickapic([Row()], both_bad_as_tie=False).dropped == {"both_bad": 1}


def test_split_is_prompt_disjoint_seeded_and_complete(small_pairs):
    splits = split_by_prompt(small_pairs, val_fraction=0.2, test_fraction=0.2, seed=3)
    prompts = [{p.prompt for p in split} for split in splits]
    assert all(prompts)
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    assert sum(len(s) for s in splits) == len(small_pairs)
    assert split_by_prompt(small_pairs, val_fraction=0.2, test_fraction=0.2, seed=3) == splits
    assert split_by_prompt(small_pairs, val_fraction=0.2, test_fraction=0.2, seed=4) != splits
    assert len({p.prompt for p in splits.val}) == round(0.2 * 16)


def test_split_errors():
    two_prompts = [PreferencePair(p, "a", "b", 1.0, 0.0) for p in ("x", "y")]
    with pytest.raises(RewardDataError, match="too few prompts to split: 2 distinct"):
        split_by_prompt(two_prompts)
    assert len(split_by_prompt(two_prompts, test_fraction=0).train) == 1
    with pytest.raises(RewardDataError, match="no preference pairs"):
        split_by_prompt([])
    with pytest.raises(RewardDataError, match="val_fraction"):
        split_by_prompt(two_prompts, val_fraction=1.5)


def test_no_pairs_and_all_ties_are_errors():
    with pytest.raises(RewardDataError, match="no preference pairs in the training set"):
        check_training_pairs([])
    ties = [PreferencePair("x", "a", "b", 0.5, 0.5)] * 3
    with pytest.raises(RewardDataError, match="all 3 training pairs are ties: nothing decisive"):
        check_training_pairs(ties)
    check_training_pairs(ties, "validation")  # ties alone are fine to evaluate on


def test_prompt_weights():
    pairs = [PreferencePair(p, "a", "b", 1.0, 0.0) for p in ("x", "x", "y", "x")]
    assert prompt_weights(pairs) == pytest.approx([1 / 3, 1 / 3, 1.0, 1 / 3])


def test_dataset_caches_unique_images_and_batches(small_pairs, tmp_path):
    model = RewardModel.from_pretrained(CLIP_PATH)
    image = small_pairs[0].image_a
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    pairs = [
        PreferencePair("a red circle", path, buffer.getvalue(), 1.0, 0.0),
        PreferencePair("a red circle", str(path), image, 0.0, 1.0),
        PreferencePair("a blue cross", buffer.getvalue(), image, 0.5, 0.5),
    ]
    dataset = PreferenceDataset(pairs, model)
    assert dataset.pixels.shape == (3, 3, 32, 32)  # path, bytes, array: the same picture three ways
    assert np.allclose(dataset.pixels[0], dataset.pixels[1]) and np.allclose(dataset.pixels[0], dataset.pixels[2])
    assert len(dataset.prompts) == 2
    batch = dataset.__getitems__([0, 2])
    assert batch["pixel_a"].shape == (2, 3, 32, 32) and batch["input_ids"].shape == (2, model.max_text_length)
    assert batch["weight"].tolist() == pytest.approx([0.5, 1.0])
    with pytest.raises(RewardDataError, match="cannot read image"):
        PreferenceDataset([PreferencePair("x", tmp_path / "missing.png", path, 1.0, 0.0)], model)

"""Sandbox dataset, caption parser, tokenizer and pixel oracles (no models needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generators.sandbox import oracles
from generators.sandbox.dataset import (
    COLOUR_NAMES,
    COLOURS,
    SHAPES,
    SandboxDataset,
    all_captions,
    make_caption,
    parse_caption,
    render,
)


@pytest.fixture(scope="module")
def samples():
    return SandboxDataset(400, seed=7).arrays()[1]


def test_dataset_is_deterministic_from_seed():
    a, b, c = SandboxDataset(20, seed=3), SandboxDataset(20, seed=3), SandboxDataset(20, seed=4)
    assert all(np.array_equal(a[i].image, b[i].image) and a[i].caption == b[i].caption for i in range(20))
    assert any(not np.array_equal(a[i].image, c[i].image) for i in range(20))


def test_samples_are_small_rgb_images_with_parsable_captions(samples):
    for s in samples[:50]:
        assert s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8
        parsed = parse_caption(s.caption)
        assert (parsed.colour, parsed.shape) == (s.colour, s.shape)
        assert parsed.size in (None, s.size_class)
    assert {s.colour for s in samples} == set(COLOUR_NAMES)
    assert {s.shape for s in samples} == set(SHAPES)


def test_captions_and_parser():
    assert make_caption("red", "circle") == "a red circle"
    assert make_caption("orange", "cross") == "an orange cross"
    assert make_caption("blue", "triangle", "large") == "a large blue triangle"
    parsed = parse_caption("A Small CYAN square.")
    assert (parsed.colour, parsed.shape, parsed.size) == ("cyan", "square", "small")
    assert parse_caption("a pink dog").colour is None
    assert len(all_captions()) == len(COLOUR_NAMES) * len(SHAPES)


def test_oracles_are_accurate_on_dataset_images(samples):
    colour = np.mean([oracles.dominant_shape_colour(s.image) == s.colour for s in samples])
    shape = np.mean([oracles.shape_of(s.image) == s.shape for s in samples])
    assert colour >= 0.95
    assert shape >= 0.95
    assert all(oracles.colour_matches(s.caption, s.image) for s in samples[:20])
    assert np.mean([oracles.shape_matches(s.caption, s.image) for s in samples]) >= 0.95


def test_oracles_accept_pil_images(samples):
    s = samples[0]
    pil = Image.fromarray(s.image)
    assert oracles.dominant_shape_colour(pil) == oracles.dominant_shape_colour(s.image)
    assert oracles.shape_area_fraction(pil) == oracles.shape_area_fraction(s.image)


def test_area_grows_with_size(samples):
    by_size = {
        size: np.mean([oracles.shape_area_fraction(s.image) for s in samples if s.size_class == size])
        for size in ("small", "medium", "large")
    }
    assert 0 < by_size["small"] < by_size["medium"] < by_size["large"] <= 1
    small, large = render("square", COLOURS["red"], 10), render("square", COLOURS["red"], 22)
    assert oracles.area_reward("a red square", small) < oracles.area_reward("a red square", large) <= 1


def test_rewards_and_empty_image():
    image = render("circle", COLOURS["green"], 16)
    assert oracles.colour_reward("a green circle", image) > 0.9
    assert oracles.colour_reward("a red circle", image) < 0.5
    assert oracles.shape_reward("a green circle", image) > oracles.shape_reward("a green square", image)
    blank = np.full((32, 32, 3), 16, dtype=np.uint8)
    assert oracles.dominant_shape_colour(blank) is None
    assert oracles.shape_of(blank) is None
    assert oracles.shape_area_fraction(blank) == 0.0
    assert not oracles.colour_matches("a green circle", blank)


def test_preferences_no_caption_describes():
    """centred, even, crisp, balanced and high judge position, colour evenness, shape regularity, size fit and
    placement, and give 0 without a shape."""
    centre, corner = render("circle", COLOURS["red"], 12), render("circle", COLOURS["red"], 12, centre=(9.0, 9.0))
    assert oracles.centred_reward("a red circle", centre) > 0.9 > 0.2 > oracles.centred_reward("a red circle", corner)

    flat = render("square", COLOURS["blue"], 18)
    blotchy = flat.copy()
    noise = np.random.default_rng(0).integers(-40, 41, size=blotchy.shape)
    inside = oracles.foreground_mask(flat)
    blotchy[inside] = np.clip(blotchy[inside].astype(int) + noise[inside], 0, 255).astype(np.uint8)
    assert oracles.even_reward("a blue square", flat) > oracles.even_reward("a blue square", blotchy) + 0.3

    stray = flat.copy()
    stray[1:4, 1:4] = COLOURS["blue"]  # a blob beside the shape
    assert oracles.crisp_reward("a blue square", flat) > 0.9
    assert oracles.crisp_reward("a blue square", stray) < oracles.crisp_reward("a blue square", flat)

    # balanced likes a shape filling a fifth of the frame (a square of side ~14), less when smaller or larger.
    small, fifth, large = (render("square", COLOURS["green"], side) for side in (8, 14, 24))
    assert oracles.balanced_reward("a green square", fifth) > 0.9
    assert oracles.balanced_reward("a green square", fifth) > oracles.balanced_reward("a green square", small)
    assert oracles.balanced_reward("a green square", fifth) > oracles.balanced_reward("a green square", large)

    # high likes a shape placed high: the same shape higher in the frame scores higher.
    up, down = (render("circle", COLOURS["red"], 10, centre=(16.0, y)) for y in (10.0, 22.0))
    assert oracles.high_reward("a red circle", up) > oracles.high_reward("a red circle", centre)
    assert oracles.high_reward("a red circle", centre) > oracles.high_reward("a red circle", down)

    blank = np.full((32, 32, 3), 16, dtype=np.uint8)
    for reward in (
        oracles.centred_reward,
        oracles.even_reward,
        oracles.crisp_reward,
        oracles.balanced_reward,
        oracles.high_reward,
    ):
        assert reward("a red circle", blank) == 0.0
        assert 0.0 <= reward("a red circle", corner) <= 1.0

"""The ``sd_safety_checker`` screen's real loading code, against a tiny random checker saved to disk (nothing is
downloaded): it loads from the setting or the environment, answers None or its reason for each image, and its
concept thresholds decide."""

from __future__ import annotations

import numpy as np
import pytest

from generators import sd_safety_checker
from generators.safety_screens import ScreenError, resolve_screen, screen_images

RED = np.zeros((32, 32, 3), np.uint8)
RED[..., 0] = 220
BLUE = np.zeros((32, 32, 3), np.uint8)
BLUE[..., 2] = 230
NOISE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _save_tiny_checker(folder, flag_like: np.ndarray | None = None) -> None:
    """A randomly initialised checker (small CLIP vision tower) and its processor, saved with ``save_pretrained``.
    With ``flag_like``, concept 0 is that image's embedding with a threshold between it and the test's other
    images, so exactly the images like it are flagged."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    tiny = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={**tiny, "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    if flag_like is not None:
        pixels = processor(images=[flag_like, BLUE, NOISE], return_tensors="pt").pixel_values
        with torch.no_grad():
            embeds = torch.nn.functional.normalize(checker.visual_projection(checker.vision_model(pixels)[1]))
            closest_other = float((embeds[1:] @ embeds[0]).max())
            assert closest_other < 0.99, "the random tower cannot tell the test images apart"
            checker.concept_embeds[0] = embeds[0]
            checker.concept_embeds_weights[0] = (1 + closest_other) / 2  # cosine above this: the concept
    checker.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.fixture
def checker_folder(tmp_path, settings):
    folder = tmp_path / "checker"
    _save_tiny_checker(folder, flag_like=RED)
    settings.SAFETY_CHECKER_PATH = str(folder)
    yield folder
    sd_safety_checker.forget_loaded()


def test_the_registered_checker_loads_from_the_setting_and_its_thresholds_decide(checker_folder):
    screen = resolve_screen("sd_safety_checker")
    assert screen is sd_safety_checker.sd_safety_checker

    verdicts = screen_images(screen, [("p", RED), ("p", BLUE), ("p", NOISE)], name="sd_safety_checker")

    assert [(v.flagged, v.reason) for v in verdicts] == [
        (True, "NSFW concept (safety checker)"),
        (False, ""),
        (False, ""),
    ]
    assert sd_safety_checker.nsfw_flags([BLUE, RED]) == [False, True]
    checker, _ = sd_safety_checker.load_checker()
    assert checker is sd_safety_checker.load_checker()[0]  # loaded once per process and source
    assert not checker.training


def test_without_a_flagging_concept_every_image_passes(tmp_path, settings, monkeypatch):
    folder = tmp_path / "plain"
    _save_tiny_checker(folder)  # every concept threshold 1: a cosine never exceeds it
    settings.SAFETY_CHECKER_PATH = None
    monkeypatch.setenv("SAFETY_CHECKER_PATH", str(folder))  # no setting: the environment variable
    try:
        assert sd_safety_checker.checker_source() == str(folder)
        assert [sd_safety_checker.sd_safety_checker("p", image) for image in (RED, BLUE, NOISE)] == [None] * 3
    finally:
        sd_safety_checker.forget_loaded()


def test_the_default_source_is_the_hub_checker(settings, monkeypatch):
    del settings.SAFETY_CHECKER_PATH
    monkeypatch.delenv("SAFETY_CHECKER_PATH", raising=False)
    assert sd_safety_checker.checker_source() == "CompVis/stable-diffusion-safety-checker"


def test_a_folder_without_a_checker_is_a_screen_error(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    settings.SAFETY_CHECKER_PATH = str(tmp_path / "empty")
    with pytest.raises(ScreenError, match="The safety checker at .*empty' cannot be loaded"):
        sd_safety_checker.sd_safety_checker("p", RED)

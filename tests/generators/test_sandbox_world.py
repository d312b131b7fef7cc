"""The committed sandbox weights: pipeline and CLIP load like real checkpoints and work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from generators.sandbox import CLIP_PATH, COLOUR_NAMES, PIPELINE_PATH, SHAPES, make_caption
from generators.sandbox.dataset import SandboxDataset, all_captions, parse_caption
from generators.sandbox.oracles import colour_matches

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pipe():
    from generators.sandbox.evaluate import load_pipeline

    return load_pipeline(PIPELINE_PATH)


def _generate(pipe, prompts, seeds, steps=20):
    from generators.sandbox.evaluate import generate

    return generate(pipe, prompts, seeds, steps=steps)


def test_pipeline_has_the_standard_layout(pipe):
    index = json.loads((PIPELINE_PATH / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("text_encoder", "tokenizer", "vae", "unet", "scheduler"):
        assert (PIPELINE_PATH / part).is_dir()
    assert not list(PIPELINE_PATH.rglob("*.bin")), "weights must be safetensors"
    assert pipe.safety_checker is None
    assert pipe.vae_scale_factor == 4
    assert pipe.unet.config.sample_size == 8
    assert pipe.tokenizer.model_max_length == 16
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_auto_pipeline_loads():
    pipe = diffusers.AutoPipelineForText2Image.from_pretrained(PIPELINE_PATH)
    assert isinstance(pipe, diffusers.StableDiffusionPipeline)


def test_generated_images_follow_the_prompt_colour(pipe):
    prompts = [make_caption(c, SHAPES[1]) for c in COLOUR_NAMES for _ in range(2)]
    seeds = [s for _ in COLOUR_NAMES for s in (0, 1)]
    images = _generate(pipe, prompts, seeds)
    assert images.shape == (len(prompts), 32, 32, 3)
    adherence = np.mean([colour_matches(p, im) for p, im in zip(prompts, images, strict=True)])
    assert adherence >= 0.9


def test_same_seed_gives_identical_pixels(pipe):
    first = _generate(pipe, ["a red circle", "a blue cross"], [5, 6], steps=10)
    second = _generate(pipe, ["a red circle", "a blue cross"], [5, 6], steps=10)
    assert np.array_equal(first, second)


def test_lora_on_attention_projections_is_possible(pipe):
    from peft import LoraConfig

    unet = diffusers.UNet2DConditionModel.from_pretrained(PIPELINE_PATH, subfolder="unet")
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    assert any("attn2.to_k" in n for n in trainable)  # cross-attention is adapted too


def test_clip_ranks_the_right_caption_first():
    model = transformers.CLIPModel.from_pretrained(CLIP_PATH).eval()
    processor = transformers.CLIPProcessor.from_pretrained(CLIP_PATH)
    images, samples = SandboxDataset(96, seed=2024).arrays()
    captions = all_captions()
    inputs = processor(text=captions, images=list(images), return_tensors="pt", padding="max_length")
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    best = [parse_caption(captions[i]) for i in logits.argmax(dim=1).tolist()]
    pairs = zip(best, samples, strict=True)
    accuracy = np.mean([(b.colour, b.shape) == (s.colour, s.shape) for b, s in pairs])
    assert accuracy >= 0.6  # chance is 1/32

"""The preference trainer on a tiny SDXL pipeline built offline (random weights): the micro-conditioning reaches the
UNet (each image's original size and crop in its time ids), DPO trains, and the adapter loads in a plain
``StableDiffusionXLPipeline``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.preference_data import build_examples, image_key
from finetune.preference_sandbox import Row
from finetune.preference_trainer import PreferenceTrainer
from generators.sandbox import PIPELINE_PATH
from tests.finetune.ddpo_support import RecordingContext


def tiny_sdxl():
    """An SDXL pipeline of tiny random components (the sandbox's CLIP tokenizer for both text encoders)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(PIPELINE_PATH / "tokenizer")
    text_config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=32,
    )
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six time ids × 8 + the pooled text embedding
        cross_attention_dim=64,  # both text encoders' hidden states side by side
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=32,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _png(size: tuple[int, int], level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (level, 255 - level, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def votes() -> list[Row]:
    """Pairs of flat images, some not of the target size (so crops and original sizes differ)."""
    rows = []
    for i in range(8):
        size = (40, 48) if i % 2 else (32, 32)
        rows.append(Row(f"a red circle {i % 4}", _png(size, 30 * i), _png((32, 32), 255 - 30 * i), 1.0, 0.0))
    return rows


def test_sdxl_time_ids_carry_each_images_size_and_crop_and_the_adapter_loads(votes, tmp_path):
    examples = build_examples(votes, "diffusion_dpo")
    config = {"train_steps": 30, "batch_size": 4, "beta": 500.0, "eval_every": 0, "sample_steps": 2,
              "eval_images_per_prompt": 1, "grid_prompts": 1, "checkpoint_every": 30}  # fmt: skip
    trainer = PreferenceTrainer(tiny_sdxl(), config, examples, ["a red circle"], RecordingContext(), tmp_path)
    assert trainer.sdxl and trainer.size == (32, 32)
    seen = []
    real_forward = trainer.parts.unet.forward

    def recording(*args, **kwargs):
        seen.append(kwargs["added_cond_kwargs"]["time_ids"].clone())
        return real_forward(*args, **kwargs)

    trainer.parts.unet.forward = recording
    rows = list(range(len(examples)))
    assert trainer.implicit_accuracy(rows, seed=1) == 0.0
    trainer.parts.unet.forward = real_forward
    tall = image_key(votes[1].jpg_0)  # 40 wide, 48 high: resized to 32 × 38, cropped 3 pixels from the top
    assert trainer.cache.micro[tall] == (48, 40, 3, 0)
    time_ids = {tuple(row.tolist()) for batch in seen for row in batch}
    assert (48.0, 40.0, 3.0, 0.0, 32.0, 32.0) in time_ids and (32.0, 32.0, 0.0, 0.0, 32.0, 32.0) in time_ids

    result = trainer.train()  # learning itself is tested on the trained sandbox model; these weights are random
    assert np.isfinite(result.summary["final_loss"]) and trainer.implicit_accuracy(rows, seed=1) > 0.0

    pipe = tiny_sdxl()
    seeds = [torch.Generator().manual_seed(3)]
    before = pipe("a red circle", num_inference_steps=2, height=32, width=32, generator=seeds, output_type="np")
    pipe.load_lora_weights(str(result.adapter_dir))
    seeds = [torch.Generator().manual_seed(3)]
    after = pipe("a red circle", num_inference_steps=2, height=32, width=32, generator=seeds, output_type="np")
    assert not np.array_equal(before.images, after.images)  # the adapter loads on the plain pipeline and acts

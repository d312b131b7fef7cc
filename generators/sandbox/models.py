"""Architectures of the sandbox pipeline and the sandbox CLIP (all tiny, CPU friendly)."""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

from .dataset import IMAGE_SIZE

LATENT_CHANNELS = 4
VAE_FACTOR = 4
LATENT_SIZE = IMAGE_SIZE // VAE_FACTOR
TEXT_HIDDEN = 64
# Stable Diffusion's noise schedule.
SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def text_config(tokenizer: CLIPTokenizer, hidden: int = TEXT_HIDDEN, heads: int = 4) -> CLIPTextConfig:
    """A 2-layer CLIP text transformer of width ``hidden`` whose positions cover the tokenizer's max length."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """The pipeline's text encoder (trained jointly with the UNet)."""
    return CLIPTextModel(text_config(tokenizer))


def build_vae() -> AutoencoderKL:
    """AutoencoderKL with downsampling factor 4: 32x32x3 images <-> 8x8x4 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )


def build_unet() -> UNet2DConditionModel:
    """~0.8 M-parameter conditional UNet on 8x8x4 latents with standard diffusers attention."""
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def build_train_scheduler() -> DDPMScheduler:
    """Noise scheduler used to train the UNet."""
    return DDPMScheduler(**SCHEDULE, clip_sample=False)


def build_inference_scheduler() -> DDIMScheduler:
    """DDIM scheduler saved with the pipeline (Stable Diffusion settings)."""
    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_clip(tokenizer: CLIPTokenizer) -> CLIPModel:
    """Tiny CLIP: 2-layer text and vision towers, 32x32 images in 4x4 patches."""
    vision = {
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 4 * TEXT_HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": IMAGE_SIZE,
        "patch_size": 4,
        "projection_dim": TEXT_HIDDEN,
    }
    config = CLIPConfig(text_config=text_config(tokenizer).to_dict(), vision_config=vision, projection_dim=TEXT_HIDDEN)
    return CLIPModel(config)


def build_image_processor() -> CLIPImageProcessor:
    """CLIP preprocessing for 32x32 images (resize + centre crop to 32, CLIP normalisation)."""
    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )

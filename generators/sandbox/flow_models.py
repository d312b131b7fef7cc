"""Architectures of the flow sandbox: a tiny Stable Diffusion 3 (flow matching, MMDiT) on the shapes world.

It shares the first sandbox's VAE (8×8×4 latents of 32×32 images) and caption tokenizer, and loads with
``StableDiffusion3Pipeline.from_pretrained(folder)``: an ``SD3Transformer2DModel``, SD3's three text encoders in
miniature (two CLIP text encoders with projection and a T5 encoder, with a T5 tokenizer built offline from the
caption vocabulary) and a ``FlowMatchEulerDiscreteScheduler`` with SD3's shift of 3.

SD3 pads the T5 prompt to ``max_sequence_length`` tokens (256 by default). The sandbox is trained with
``MAX_SEQUENCE_LENGTH``, so call the pipeline with ``max_sequence_length=MAX_SEQUENCE_LENGTH`` (the platform does):
256 would be 16 times the sandbox's 16 image tokens, and padding it never saw.
"""

from __future__ import annotations

from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from transformers import (
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from .dataset import VOCABULARY
from .models import LATENT_CHANNELS, LATENT_SIZE, text_config
from .tokenizer import MODEL_MAX_LENGTH

TEXT_HIDDEN = 32  # each of the two CLIP text encoders; SD3 concatenates their features (64)
JOINT_DIM = 2 * TEXT_HIDDEN  # the T5 width, and the transformer's context width
HEADS, HEAD_DIM = 4, 16  # transformer width 64
LAYERS = 4
PATCH = 2  # 8×8 latents → 16 image tokens
MAX_SEQUENCE_LENGTH = MODEL_MAX_LENGTH  # T5 tokens per prompt: the pipeline's max_sequence_length for this model
SHIFT = 3.0  # SD3's timestep shift


def build_flow_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    """One of the two text encoders (trained jointly with the transformer)."""
    return CLIPTextModelWithProjection(text_config(tokenizer, hidden=TEXT_HIDDEN, heads=2))


def build_t5_tokenizer() -> T5TokenizerFast:
    """A T5 (Unigram) tokenizer whose pieces are the caption words: no SentencePiece model to download."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in VOCABULARY]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=MAX_SEQUENCE_LENGTH)


def build_t5_encoder(tokenizer: T5TokenizerFast) -> T5EncoderModel:
    """A 2-layer T5 encoder of width ``JOINT_DIM`` (SD3's ``text_encoder_3``)."""
    config = T5Config(
        vocab_size=len(tokenizer), d_model=JOINT_DIM, d_kv=16, d_ff=2 * JOINT_DIM, num_layers=2, num_heads=4
    )
    return T5EncoderModel(config)


def build_transformer() -> SD3Transformer2DModel:
    """~0.6 M-parameter MMDiT on 8×8×4 latents: 4 joint blocks, width 64, 2×2 patches."""
    return SD3Transformer2DModel(
        sample_size=LATENT_SIZE,
        patch_size=PATCH,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=LAYERS,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=HEADS,
        joint_attention_dim=JOINT_DIM,
        caption_projection_dim=HEADS * HEAD_DIM,
        pooled_projection_dim=JOINT_DIM,
        pos_embed_max_size=2 * LATENT_SIZE // PATCH,  # up to 64×64 pixels
    )


def build_flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The pipeline's sampler and the training noise schedule (SD3's shift)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=SHIFT)


def flow_vae(vae: AutoencoderKL) -> AutoencoderKL:
    """The first sandbox's VAE with the ``shift_factor`` SD3's pipeline reads (0: its latents are centred)."""
    vae.register_to_config(shift_factor=0.0)
    return vae

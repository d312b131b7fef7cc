"""Our preference trainer (``finetune.preference_trainer.PreferenceTrainer``, Diffusion-DPO / KTO) on a Stable
Diffusion 1.5-config (512×512) or SDXL-config (1024×1024, micro-conditioning) pipeline with random weights:
training pairs/s and peak CUDA memory in fp16 and bf16 (fp32 LoRA rank 8, AdamW), with and without gradient
checkpointing. Nothing is downloaded (SD 1.5 configs from ``bench/gpu_check.py``, SDXL's here); the "votes" are
random images with fixed winners (the bench measures speed, not learning).

    python bench/gpu_dpo.py                        # on a CUDA machine: SD 1.5, fp16 and bf16, batch 8
    python bench/gpu_dpo.py --model sdxl --batch 4
    python bench/gpu_dpo.py --smoke [--model sdxl] # the same code path on a CPU (tiny models, 64×64)

The latent encoding of the images is timed apart (``encode_images_per_s``); the step rate is the median over the
steps after the first (warm-up). Prints a table and a one-line JSON summary last.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_check import (  # noqa: E402
    _SMOKE_VAE,
    CLIP_MAX_LENGTH,
    CLIP_VOCAB_SIZE,
    SD15_SCHEDULER,
    SD15_VAE,
    build_clip_tokenizer,
    build_sd15_pipeline,
    quiet_diffusers,
    scaled,
)

# stabilityai/stable-diffusion-xl-base-1.0's UNet and text encoders (CLIP ViT-L and OpenCLIP ViT-bigG).
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SDXL_TEXT_1 = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "hidden_act": "quick_gelu", "projection_dim": 768}  # fmt: skip
SDXL_TEXT_2 = {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 20, "intermediate_size": 5120,
               "hidden_act": "gelu", "projection_dim": 1280}  # fmt: skip
_SMOKE_SDXL_UNET = {"block_out_channels": (32, 64, 64), "transformer_layers_per_block": (1, 1, 1),
                    "attention_head_dim": (2, 4, 4), "cross_attention_dim": 64, "addition_time_embed_dim": 8,
                    "projection_class_embeddings_input_dim": 6 * 8 + 32, "layers_per_block": 1}  # fmt: skip
_SMOKE_TEXT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
               "projection_dim": 32}  # fmt: skip


def build_sdxl_pipeline(device: torch.device, dtype: torch.dtype, smoke: bool):
    """A ``StableDiffusionXLPipeline`` of SDXL-config components with random weights (tiny with ``smoke``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    common = {"vocab_size": CLIP_VOCAB_SIZE, "max_position_embeddings": CLIP_MAX_LENGTH}
    text_1 = CLIPTextConfig(**common, **scaled(SDXL_TEXT_1, _SMOKE_TEXT, smoke))
    text_2 = CLIPTextConfig(**common, **scaled(SDXL_TEXT_2, _SMOKE_TEXT, smoke))
    unet_cfg = scaled(SDXL_UNET, _SMOKE_SDXL_UNET, smoke)
    vae_cfg = {**scaled(SD15_VAE, _SMOKE_VAE, smoke), "sample_size": 64 if smoke else 1024, "scaling_factor": 0.13025}
    unet_cfg["sample_size"] = vae_cfg["sample_size"] // 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        encoder_1, encoder_2 = CLIPTextModel(text_1), CLIPTextModelWithProjection(text_2)
    with quiet_diffusers():
        for module in (unet, vae, encoder_1, encoder_2):
            module.to(dtype=dtype).eval().requires_grad_(False)
        tokenizer = build_clip_tokenizer()
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoder_1,
            text_encoder_2=encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=DDIMScheduler(**SD15_SCHEDULER),
        )


from finetune.preference_sandbox import Row  # noqa: E402


class StepClock:
    """A JobContext that records when each step ends (progress reports) and nothing else."""

    run_id, attempt = 0, 1

    def __init__(self) -> None:
        self.times: list[float] = []

    def report_progress(self, fraction: float, message: str = "") -> None:
        if message.startswith("step "):
            self.times.append(time.perf_counter())

    def log_metrics(self, step, values) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def save_checkpoint(self, payload: bytes) -> None:
        pass

    def load_checkpoint(self):
        return None

    def save_artifact(self, name, data, kind, metadata=None) -> None:
        pass


def random_votes(count: int, size: int, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)

    def image() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    prompts = ["a photograph of an astronaut riding a horse", "a red car in the snow", "a bowl of fruit", "a cat"]
    return [Row(prompts[i % len(prompts)], image(), image(), 1.0, 0.0) for i in range(count)]


def measure(precision: str, checkpointing: bool, args, device: torch.device, votes: list[Row]) -> dict:
    from finetune.config import DDPOConfig
    from finetune.preference_data import build_examples
    from finetune.preference_trainer import PreferenceTrainer
    from finetune.trainer import make_accelerator

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "no": torch.float32}[precision]
    build = build_sdxl_pipeline if args.model == "sdxl" else build_sd15_pipeline
    pipe = build(device, dtype, smoke=args.smoke)
    config = {
        "algorithm": args.algorithm,
        "train_steps": args.steps,
        "batch_size": args.batch,
        "beta": 5000.0,
        "learning_rate": 1e-5,
        "lora_rank": 8,
        "gradient_checkpointing": checkpointing,
        "mixed_precision": precision,
        "eval_every": 0,
        "checkpoint_every": args.steps,
        "sample_steps": 2,
        "grid_prompts": 1,
        "eval_images_per_prompt": 1,
    }
    accelerator = make_accelerator(DDPOConfig.from_dict({"mixed_precision": precision}), cpu=device.type != "cuda")
    clock = StepClock()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = PreferenceTrainer(
        pipe, config, build_examples(votes, args.algorithm), ["a cat"], clock, accelerator=accelerator
    )
    began = time.perf_counter()
    trainer._prepare_data()
    encoded = time.perf_counter() - began
    trainer.train()
    steps = np.diff(clock.times)[1:] if len(clock.times) > 2 else np.diff(clock.times)
    per_step = statistics.median(steps.tolist())
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    del trainer, pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "precision": precision,
        "gradient_checkpointing": checkpointing,
        "seconds_per_step": round(per_step, 4),
        "examples_per_s": round(args.batch / per_step, 2),
        "pairs_per_s": round(args.batch / per_step, 2) if args.algorithm == "diffusion_dpo" else None,
        "encode_images_per_s": round(len(votes) * 2 / encoded, 1),
        "peak_gib": round(peak, 2) if peak is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--model", choices=["sd15", "sdxl"], default="sd15", help="SD 1.5 at 512², SDXL at 1024²")
    parser.add_argument("--algorithm", choices=["diffusion_dpo", "diffusion_kto"], default="diffusion_dpo")
    parser.add_argument("--batch", type=int, default=8, help="pairs (DPO) or images (KTO) per step")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--votes", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    precisions = ["fp16", "bf16"] if device.type == "cuda" else ["no"]
    side = 64 if args.smoke else (1024 if args.model == "sdxl" else 512)
    votes = random_votes(args.votes, side)
    rows = []
    for precision in precisions:
        for checkpointing in (False, True):
            try:
                rows.append(measure(precision, checkpointing, args, device, votes))
            except torch.cuda.OutOfMemoryError as exc:  # noqa: PERF203
                rows.append({"precision": precision, "gradient_checkpointing": checkpointing, "error": str(exc)})
    summary = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": args.model,
        "algorithm": args.algorithm,
        "image_size": side,
        "batch": args.batch,
        "rows": rows,
    }
    print(f"{'precision':<10}{'ckpt':>6}{'s/step':>10}{'pairs/s':>10}{'peak GiB':>10}")
    for row in rows:
        print(
            f"{row['precision']:<10}{row['gradient_checkpointing']!s:>6}{row.get('seconds_per_step', '-')!s:>10}"
            f"{row.get('pairs_per_s', '-')!s:>10}{row.get('peak_gib', '-')!s:>10}"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

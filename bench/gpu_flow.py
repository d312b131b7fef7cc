"""Flow-matching models on a GPU: generation images/s and peak memory for an SD3.5-Medium-configured and a
FLUX.1-configured transformer (random weights; FLUX at reduced depth by default), and Flow-GRPO samples/s
(sampling, training, a whole epoch) with our trainer (``finetune.trainer.DDPOTrainer``) on both, at ``--size``.
Nothing is downloaded: the transformers and VAEs take the published configs; the text encoders keep the published
widths (what the transformer reads) at two layers, with offline tokenizers, since the bench is about the denoiser.

    python bench/gpu_flow.py                  # on a CUDA machine: 512×512, bf16 autocast, LoRA rank 4 (fp32)
    python bench/gpu_flow.py --smoke          # the same code paths on a CPU (tiny widths, 64×64, 2 steps)
    python bench/gpu_flow.py --flux-layers 19 --flux-single-layers 38     # FLUX.1 at its full depth

Prints one table per part and a one-line JSON summary last. SD3.5 samples with classifier-free guidance 4.5 (two
transformer passes a step), FLUX.1 with its guidance embedding at 3.5 (one pass a step, FLUX.1-dev's default; see
``finetune/flux_sampling.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_ddpo import Recorder, brightness  # noqa: E402

PROMPTS = ["a large red circle", "a small blue square", "a green triangle", "a white cross"]

# stabilityai/stable-diffusion-3.5-medium transformer/config.json and vae/config.json.
SD35_MEDIUM = {
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "pos_embed_max_size": 384,
    "qk_norm": "rms_norm",
    "dual_attention_layers": tuple(range(13)),
}
SD3_VAE = {"latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}
# black-forest-labs/FLUX.1-dev transformer/config.json (depth set by --flux-layers / --flux-single-layers).
FLUX_1 = {
    "patch_size": 1,
    "in_channels": 64,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
}
FLUX_VAE = {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159}


def _tokenizers(folder: Path, t5_length: int):
    from generators.sandbox.flow_models import build_t5_tokenizer
    from generators.sandbox.tokenizer import build_tokenizer

    t5 = build_t5_tokenizer()
    t5.model_max_length = t5_length
    return build_tokenizer(folder / "clip-tokenizer"), t5


def _clip(tokenizer, hidden: int, projection: int | None):
    """A 2-layer CLIP text encoder of width ``hidden``: with a projection (SD3's two) or without (FLUX's pooled
    output)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        projection_dim=projection or hidden,
        num_hidden_layers=2,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5(tokenizer, width: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer), d_model=width, d_kv=64, d_ff=2 * width, num_layers=2, num_heads=max(1, width // 64)
    )
    return T5EncoderModel(config)


def _vae(latent: dict[str, Any], smoke: bool):
    from diffusers import AutoencoderKL

    blocks = (32, 32) if smoke else (128, 256, 512, 512)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1 if smoke else 2,
        norm_num_groups=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **latent,
    )


def build_sd35_pipeline(device: torch.device, dtype: torch.dtype, smoke: bool, folder: Path):
    """A ``StableDiffusion3Pipeline`` with SD3.5-Medium's transformer and VAE configs (random weights)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    config = dict(SD35_MEDIUM)
    if smoke:
        config.update(
            num_layers=2,
            num_attention_heads=2,
            attention_head_dim=16,
            joint_attention_dim=64,
            caption_projection_dim=32,
            pooled_projection_dim=64,
            sample_size=32,
            dual_attention_layers=(0,),
        )
    clip_tokenizer, t5_tokenizer = _tokenizers(folder, 16 if smoke else 256)
    clip_widths = (32, 32) if smoke else (768, 1280)
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**config),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(SD3_VAE, smoke),
        text_encoder=_clip(clip_tokenizer, clip_widths[0], clip_widths[0]),
        tokenizer=clip_tokenizer,
        text_encoder_2=_clip(clip_tokenizer, clip_widths[1], clip_widths[1]),
        tokenizer_2=clip_tokenizer,
        text_encoder_3=_t5(t5_tokenizer, config["joint_attention_dim"]),
        tokenizer_3=t5_tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def build_flux_pipeline(device: torch.device, dtype: torch.dtype, smoke: bool, folder: Path, depth: tuple[int, int]):
    """A ``FluxPipeline`` with FLUX.1's transformer and VAE configs (random weights, ``depth`` blocks)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    config = dict(FLUX_1, num_layers=depth[0], num_single_layers=depth[1], axes_dims_rope=(16, 56, 56))
    if smoke:
        config.update(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2)
        config.update(joint_attention_dim=64, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
    clip_tokenizer, t5_tokenizer = _tokenizers(folder, 16 if smoke else 512)
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
    )
    pipe = FluxPipeline(
        transformer=FluxTransformer2DModel(**config),
        scheduler=scheduler,
        vae=_vae(FLUX_VAE, smoke),
        text_encoder=_clip(clip_tokenizer, config["pooled_projection_dim"], None),
        tokenizer=clip_tokenizer,
        text_encoder_2=_t5(t5_tokenizer, config["joint_attention_dim"]),
        tokenizer_2=t5_tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def _params_m(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 1)


def bench_generation(pipe, device: torch.device, size: int, steps: int, batches: list[int], repeats: int) -> list:
    """images/s and peak memory of ``pipe`` per batch size (CFG 4.5; the median of ``repeats`` after a warm-up)."""
    from generators.pipeline import max_sequence_length

    rows = []
    for batch in batches:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        timings = []
        for attempt in range(repeats + 1):
            began = time.perf_counter()
            with torch.inference_mode():
                pipe(
                    prompts,
                    height=size,
                    width=size,
                    num_inference_steps=steps,
                    guidance_scale=4.5,
                    max_sequence_length=max_sequence_length(pipe),
                    generator=torch.Generator(device="cpu").manual_seed(attempt),
                    output_type="np",
                )
            if device.type == "cuda":
                torch.cuda.synchronize()
            if attempt:
                timings.append(time.perf_counter() - began)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        rows.append(
            {
                "batch": batch,
                "images_per_s": round(batch / statistics.median(timings), 3),
                "peak_gib": round(peak, 2) if peak is not None else None,
            }
        )
    return rows


def bench_flow_grpo(
    pipe, device: torch.device, args: argparse.Namespace, size: int, guidance_scale: float
) -> dict[str, Any]:
    """Flow-GRPO epochs on ``pipe`` at ``size``×``size``: samples/s of sampling, training and the epoch (after the
    first), peak memory. ``guidance_scale``: CFG for SD3, the guidance embedding's input for FLUX."""
    from finetune.config import DDPOConfig
    from finetune.trainer import DDPOTrainer, make_accelerator

    config = {
        "epochs": args.epochs,
        "samples_per_epoch": args.samples,
        "images_per_prompt": 4,
        "sample_batch_size": args.sample_batch,
        "train_batch_size": args.train_batch,
        "steps": 2 if args.smoke else args.grpo_steps,
        "guidance_scale": guidance_scale,
        "height": size,
        "width": size,
        "timesteps_per_forward": 1,
        "timestep_window": args.window,
        "learning_rate": 3e-4,
        "inner_epochs": 1,
        "lora_rank": 4,
        "mixed_precision": "bf16" if device.type == "cuda" else "no",
        "eval_every": 0,
        "grid_prompts": 1,
    }
    accelerator = make_accelerator(DDPOConfig.from_dict(config), cpu=device.type != "cuda")
    recorder = Recorder()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = DDPOTrainer(pipe, config, brightness, PROMPTS, PROMPTS[:1], recorder, None, accelerator=accelerator)
    began = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - began
    epochs = [recorder.metrics[e] for e in sorted(recorder.metrics) if "seconds_epoch" in recorder.metrics[e]]
    later = epochs[1:] or epochs

    def rate(key: str) -> float:
        return round(args.samples / statistics.median(e[key] for e in later), 3)

    return {
        "algorithm": trainer.algorithm,
        "parts": type(trainer.parts).__name__,
        "size": size,
        "guidance_scale": guidance_scale,
        "steps": config["steps"],
        "timestep_window": args.window,
        "samples_per_epoch": args.samples,
        "sampling_samples_per_s": rate("seconds_sampling"),
        "training_samples_per_s": rate("seconds_training"),
        "epoch_samples_per_s": rate("seconds_epoch"),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
        "total_seconds": round(total, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny widths on the CPU: checks the code paths")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=28, help="generation steps (SD3.5-M's default is 40)")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--flux-layers", type=int, default=4, help="FLUX.1: 19 double-stream blocks")
    parser.add_argument("--flux-single-layers", type=int, default=8, help="FLUX.1: 38 single-stream blocks")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16, help="Flow-GRPO samples per epoch")
    parser.add_argument("--sample-batch", type=int, default=8)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--grpo-steps", type=int, default=10, help="SDE steps while sampling for training")
    parser.add_argument("--window", type=int, default=0, help="train only the first N steps (0: all)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    size = 64 if args.smoke else args.size
    steps = 2 if args.smoke else args.steps
    batches = [1, 2] if args.smoke else [int(b) for b in args.batches.split(",")]
    summary: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "size": size,
        "generation_steps": steps,
    }
    with tempfile.TemporaryDirectory() as folder:
        sd35 = build_sd35_pipeline(device, dtype, args.smoke, Path(folder))
        summary["sd35_transformer_params_m"] = _params_m(sd35.transformer)
        summary["sd35_generation"] = bench_generation(sd35, device, size, steps, batches, args.repeats)
        summary["sd35_flow_grpo"] = bench_flow_grpo(sd35, device, args, size, 4.5)
        del sd35
        depth = (args.flux_layers, args.flux_single_layers)
        flux = build_flux_pipeline(device, dtype, args.smoke, Path(folder), depth)
        summary["flux_depth"] = list(depth)
        summary["flux_transformer_params_m"] = _params_m(flux.transformer)
        summary["flux_generation"] = bench_generation(flux, device, size, steps, batches, args.repeats)
        summary["flux_flow_grpo"] = bench_flow_grpo(flux, device, args, size, 3.5)
    for name in ("sd35", "flux"):
        print(f"{name} generation ({summary[f'{name}_transformer_params_m']} M transformer parameters)")
        for row in summary[f"{name}_generation"]:
            print(f"  batch {row['batch']:>3}: {row['images_per_s']:>8} images/s, peak {row['peak_gib']} GiB")
    for name in ("sd35", "flux"):
        grpo = summary[f"{name}_flow_grpo"]
        print(
            f"{name} Flow-GRPO: sampling {grpo['sampling_samples_per_s']}, training {grpo['training_samples_per_s']}, "
            f"epoch {grpo['epoch_samples_per_s']} samples/s, peak {grpo['peak_gib']} GiB"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

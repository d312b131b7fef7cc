"""Our preference trainer (``finetune.preference_trainer.PreferenceTrainer``, Diffusion-DPO / KTO) on a Stable
Diffusion 1.5-config pipeline with random weights: training pairs/s and peak CUDA memory at 512×512 in fp16 and
bf16 (fp32 LoRA rank 8, AdamW), with and without gradient checkpointing. Nothing is downloaded (configs from
``bench/gpu_check.py``); the "votes" are random images with random winners (the bench measures speed, not learning).

    python bench/gpu_dpo.py                        # on a CUDA machine: fp16 and bf16, batch 8
    python bench/gpu_dpo.py --batch 16 --steps 20
    python bench/gpu_dpo.py --smoke                # the same code path on a CPU (tiny models, 64×64)

SDXL is not measured yet (the trainer supports it; ``tests/finetune/test_preference_sdxl.py`` runs a tiny random one).
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

from gpu_check import build_sd15_pipeline  # noqa: E402

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
    pipe = build_sd15_pipeline(device, dtype, smoke=args.smoke)
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
    parser.add_argument("--algorithm", choices=["diffusion_dpo", "diffusion_kto"], default="diffusion_dpo")
    parser.add_argument("--batch", type=int, default=8, help="pairs (DPO) or images (KTO) per step")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--votes", type=int, default=64)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    precisions = ["fp16", "bf16"] if device.type == "cuda" else ["no"]
    votes = random_votes(args.votes, 64 if args.smoke else 512)
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
        "algorithm": args.algorithm,
        "image_size": 64 if args.smoke else 512,
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

"""Our DDPO trainer (``finetune.trainer.DDPOTrainer``) on a Stable Diffusion 1.5-config pipeline with random
weights: samples/s for sampling, training and a whole epoch, and peak CUDA memory, at 512×512 with 20 DDIM steps,
fp16 autocast and fp32 LoRA rank 4. Nothing is downloaded (configs from ``bench/gpu_check.py``).

    python bench/gpu_ddpo.py                 # on a CUDA machine
    python bench/gpu_ddpo.py --smoke         # the same code path on a CPU (tiny models, 64×64, 2 steps)

The first epoch includes warm-up (cuDNN autotuning, allocator growth); the figures are from the later epochs.
Prints a table and a one-line JSON summary last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_check import build_sd15_pipeline  # noqa: E402


class Recorder:
    """A JobContext that keeps the per-epoch metrics in memory."""

    run_id, attempt = 0, 1

    def __init__(self) -> None:
        self.metrics: dict[int, dict[str, float]] = {}

    def report_progress(self, fraction: float, message: str = "") -> None:
        print(f"  {fraction:5.1%} {message}", file=sys.stderr, flush=True)

    def log_metrics(self, step, values) -> None:
        self.metrics.setdefault(step, {}).update(values)

    def should_stop(self) -> bool:
        return False

    def save_checkpoint(self, payload: bytes) -> None:
        self.checkpoint_bytes = len(payload)

    def load_checkpoint(self):
        return None

    def save_artifact(self, name, data, kind, metadata=None) -> None:
        pass


def brightness(prompts, images) -> list[float]:
    """A cheap reward: mean brightness (the bench measures speed, not learning)."""
    import numpy as np

    return [float(np.asarray(image, dtype=np.float32).mean() / 255.0) for image in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=16, help="samples per epoch")
    parser.add_argument("--sample-batch", type=int, default=8)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--timesteps-per-forward", type=int, default=1)
    args = parser.parse_args()

    from finetune.trainer import DDPOTrainer

    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = build_sd15_pipeline(device, dtype, smoke=args.smoke)
    config = {
        "epochs": args.epochs,
        "samples_per_epoch": args.samples,
        "images_per_prompt": 4,
        "sample_batch_size": args.sample_batch,
        "train_batch_size": args.train_batch,
        "steps": 2 if args.smoke else 20,
        "timesteps_per_forward": args.timesteps_per_forward,
        "learning_rate": 3e-4,
        "clip_range": 1e-4,
        "inner_epochs": 1,  # SD_RECOMMENDED's, and what the recorded H100 figures ran with
        "lora_rank": 4,
        "mixed_precision": "fp16" if device.type == "cuda" else "no",
        "eval_every": 0,
        "grid_prompts": 1,
    }
    prompts = ["a photograph of an astronaut riding a horse", "a red car in the snow", "a bowl of fruit", "a cat"]
    recorder = Recorder()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    trainer = DDPOTrainer(
        pipe, config, brightness, prompts, prompts[:1], recorder, None, accelerator=make_accelerator_for(config, device)
    )
    trainer.train()
    total = time.perf_counter() - began
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    epochs = [recorder.metrics[e] for e in sorted(recorder.metrics) if "seconds_epoch" in recorder.metrics[e]]
    later = epochs[1:] or epochs
    n = args.samples

    def rate(key: str) -> float:
        return round(n / statistics.median(e[key] for e in later), 3)

    summary = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "image_size": 64 if args.smoke else 512,
        "steps": config["steps"],
        "samples_per_epoch": n,
        "sample_batch": args.sample_batch,
        "train_batch": args.train_batch,
        "timesteps_per_forward": args.timesteps_per_forward,
        "precision": config["mixed_precision"],
        "sampling_samples_per_s": rate("seconds_sampling"),
        "training_samples_per_s": rate("seconds_training"),
        "epoch_samples_per_s": rate("seconds_epoch"),
        "seconds_per_epoch": round(statistics.median(e["seconds_epoch"] for e in later), 3),
        "peak_gib": round(peak, 2) if peak is not None else None,
        "total_seconds": round(total, 1),
    }
    print(f"{'phase':<12}{'samples/s':>12}")
    for key in ("sampling", "training", "epoch"):
        print(f"{key:<12}{summary[f'{key}_samples_per_s']:>12}")
    print(f"peak CUDA memory: {summary['peak_gib']} GiB")
    print(json.dumps(summary))


def make_accelerator_for(config: dict, device: torch.device):
    from finetune.config import DDPOConfig
    from finetune.trainer import make_accelerator

    return make_accelerator(DDPOConfig.from_dict(config), cpu=device.type != "cuda")


if __name__ == "__main__":
    main()

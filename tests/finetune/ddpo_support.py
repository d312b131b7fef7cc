"""Shared pieces of the DDPO tests: a recording JobContext, tiny configs, sandbox prompts and rewards."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from generators.sandbox import PIPELINE_PATH
from generators.sandbox.oracles import area_reward
from generators.sandbox_catalog import sandbox_prompts

PIPELINE = str(PIPELINE_PATH)
_PROMPTS = sandbox_prompts()
TRAIN_PROMPTS = [p["text"] for p in _PROMPTS["train"]]
EVAL_PROMPTS = [p["text"] for p in _PROMPTS["eval"]]

# Small enough for a few seconds per run on a CPU.
TINY: dict[str, Any] = {
    "epochs": 2,
    "samples_per_epoch": 8,
    "images_per_prompt": 2,
    "sample_batch_size": 4,
    "train_batch_size": 4,
    "steps": 4,
    "eval_images_per_prompt": 1,
    "eval_every": 0,
    "grid_prompts": 2,
    "stat_buffer_size": 8,
    "stat_min_count": 2,
}

# A ``finetune`` run config's DDPO settings, small enough for a run in a test.
RUN_TINY: dict[str, Any] = {
    "epochs": 2,
    "samples_per_epoch": 8,
    "images_per_prompt": 4,
    "sample_batch_size": 8,
    "train_batch_size": 4,
    "steps": 4,
    "eval_every": 1,
    "eval_images_per_prompt": 1,
    "grid_prompts": 2,
}


class RecordingContext:
    """A JobContext that keeps everything in memory; ``stop_after`` checkpoints it asks to stop."""

    run_id = 1
    attempt = 1

    def __init__(self, checkpoint: bytes | None = None, stop_after: int | None = None):
        self.checkpoint = checkpoint
        self.checkpoints_saved = 0
        self.stop_after = stop_after
        self.metrics: list[tuple[int, dict]] = []
        self.progress: list[float] = []
        self.artifacts: dict[str, tuple[bytes, str, dict]] = {}

    def report_progress(self, fraction: float, message: str = "") -> None:
        self.progress.append(fraction)

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.metrics.append((step, dict(values)))

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.checkpoints_saved >= self.stop_after

    def save_checkpoint(self, payload: bytes) -> None:
        self.checkpoint = payload
        self.checkpoints_saved += 1

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        self.artifacts[name] = (data, kind, dict(metadata or {}))


def area(prompts: list[str], images: list) -> list[float]:
    return [area_reward(p, im) for p, im in zip(prompts, images, strict=True)]


def sandbox_pipeline_images(pipe, prompts: list[str], seeds: list[int], steps: int) -> np.ndarray:
    """A plain ``StableDiffusionPipeline``'s deterministic (η = 0) 32×32 images of the sandbox, as uint8, one per
    (prompt, seed): what a trainer's own evaluation samples must reproduce."""
    out = pipe(
        prompts,
        num_inference_steps=steps,
        guidance_scale=5.0,
        eta=0.0,
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)

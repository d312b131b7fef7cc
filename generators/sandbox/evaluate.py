"""Evaluate the saved sandbox pipeline with the pixel oracles.

Usage::

    python -m generators.sandbox.evaluate --grid /tmp/sandbox_grid.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline
from PIL import Image

from generators.pipeline import max_sequence_length

from . import DEFAULT_GUIDANCE, DEFAULT_STEPS, PIPELINE_PATH
from .dataset import COLOUR_NAMES, IMAGE_SIZE, SHAPES, make_caption
from .oracles import dominant_shape_colour, shape_area_fraction, shape_of

NONE_LABEL = "none"


def load_pipeline(path: str | Path = PIPELINE_PATH) -> StableDiffusionPipeline:
    """Load the pipeline exactly like a real checkpoint (its class from ``model_index.json``: the sandbox's
    ``StableDiffusionPipeline`` or the flow sandbox's ``StableDiffusion3Pipeline``), with the progress bar off."""
    pipe = DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    seeds: list[int],
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    batch_size: int = 64,
) -> np.ndarray:
    """One image per (prompt, seed) pair, each with its own ``torch.Generator``; (N, H, W, 3) uint8."""
    out = []
    extra = {"max_sequence_length": length} if (length := max_sequence_length(pipe)) is not None else {}
    for i in range(0, len(prompts), batch_size):
        chunk_prompts, chunk_seeds = prompts[i : i + batch_size], seeds[i : i + batch_size]
        result = pipe(
            chunk_prompts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            generator=[torch.Generator().manual_seed(s) for s in chunk_seeds],
            output_type="np",
            **extra,
        )
        out.append(np.clip(np.rint(result.images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(out)


def confusion_markdown(title: str, labels: list[str], truth: list[str], predicted: list[str]) -> str:
    """Markdown confusion matrix: rows are the prompt's value, columns what the oracle saw."""
    columns = labels + ([NONE_LABEL] if NONE_LABEL in predicted else [])
    lines = [f"| {title} | " + " | ".join(columns) + " | accuracy |", "|---" * (len(columns) + 2) + "|"]
    for label in labels:
        row = [p for t, p in zip(truth, predicted, strict=True) if t == label]
        counts = [sum(p == c for p in row) for c in columns]
        accuracy = counts[columns.index(label)] / len(row) if row else float("nan")
        lines.append(f"| {label} | " + " | ".join(map(str, counts)) + f" | {accuracy:.0%} |")
    return "\n".join(lines)


def save_grid(images: np.ndarray, rows: int, path: str | Path, scale: int = 2) -> None:
    """Tile images row-major into a grid PNG, upscaled with nearest neighbour."""
    cols = len(images) // rows
    h, w = images.shape[1:3]
    grid = images[: rows * cols].reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, 3)
    Image.fromarray(grid).resize((cols * w * scale, rows * h * scale), Image.Resampling.NEAREST).save(path)


def speed(
    pipe: StableDiffusionPipeline,
    images: int = 16,
    steps: int = 10,
    guidance: float = DEFAULT_GUIDANCE,
    runs: int = 5,
) -> float:
    """Median wall time of one pipeline call (after a warm-up)."""
    prompts = [make_caption(COLOUR_NAMES[i % len(COLOUR_NAMES)], SHAPES[i % len(SHAPES)]) for i in range(images)]
    timings = []
    for run in range(runs + 1):
        start = time.perf_counter()
        generate(pipe, prompts, list(range(images)), steps=steps, guidance=guidance)
        if run:
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def evaluate(pipe: StableDiffusionPipeline, seeds: int, steps: int, guidance: float) -> tuple[dict, np.ndarray, str]:
    """Generate every colour x shape for ``seeds`` seeds; returns (summary, images, markdown report)."""
    combos = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    prompts = [make_caption(c, s) for c, s in combos for _ in range(seeds)]
    seed_list = [k for _ in combos for k in range(seeds)]
    start = time.perf_counter()
    images = generate(pipe, prompts, seed_list, steps=steps, guidance=guidance)
    seconds = time.perf_counter() - start
    want_colour = [c for c, _ in combos for _ in range(seeds)]
    want_shape = [s for _, s in combos for _ in range(seeds)]
    got_colour = [dominant_shape_colour(im) or NONE_LABEL for im in images]
    got_shape = [shape_of(im) or NONE_LABEL for im in images]
    areas = np.array([shape_area_fraction(im) for im in images])
    summary = {
        "images": len(images),
        "steps": steps,
        "guidance": guidance,
        "colour_adherence": float(np.mean([a == b for a, b in zip(want_colour, got_colour, strict=True)])),
        "shape_adherence": float(np.mean([a == b for a, b in zip(want_shape, got_shape, strict=True)])),
        "both_adherence": float(
            np.mean(
                [a == b and c == d for a, b, c, d in zip(want_colour, got_colour, want_shape, got_shape, strict=True)]
            )
        ),
        "area_fraction": {
            "mean": float(areas.mean()),
            "std": float(areas.std()),
            "min": float(areas.min()),
            "max": float(areas.max()),
        },
        "generation_seconds": seconds,
    }
    report = "\n\n".join(
        [
            confusion_markdown("prompt colour \\ seen", list(COLOUR_NAMES), want_colour, got_colour),
            confusion_markdown("prompt shape \\ seen", list(SHAPES), want_shape, got_shape),
        ]
    )
    return summary, images, report


def size_control(pipe: StableDiffusionPipeline, steps: int, guidance: float, seed: int = 100) -> dict:
    """Mean shape area fraction for "small", unspecified and "large" prompts (one image per combination)."""
    result = {}
    for size in ("small", None, "large"):
        prompts = [make_caption(c, s, size) for c in COLOUR_NAMES for s in SHAPES]
        images = generate(pipe, prompts, [seed] * len(prompts), steps=steps, guidance=guidance)
        result[size or "unspecified"] = float(np.mean([shape_area_fraction(im) for im in images]))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate the sandbox pipeline with the pixel oracles.")
    parser.add_argument("--pipeline", type=Path, default=PIPELINE_PATH)
    parser.add_argument("--seeds", type=int, default=4, help="images per colour x shape combination")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", type=Path, default=Path(tempfile.gettempdir()) / "sandbox_grid.png")
    parser.add_argument("--speed-runs", type=int, default=5, help="0 skips the speed figure")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.pipeline)
    summary, images, report = evaluate(pipe, args.seeds, args.steps, args.guidance)
    # Grid: one row per colour; columns are shapes x seeds.
    save_grid(images, rows=len(COLOUR_NAMES), path=args.grid)
    summary["grid"] = str(args.grid)
    summary["area_by_size_word"] = size_control(pipe, args.steps, args.guidance)
    if args.speed_runs:
        summary["speed_16x10_cfg_seconds"] = speed(pipe, guidance=args.guidance, runs=args.speed_runs)
        summary["speed_threads"] = args.threads
    print(report)
    print()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

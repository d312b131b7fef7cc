"""The sandbox as platform data: its base model and its train/eval prompt sets."""

from __future__ import annotations

from generators.sandbox import COLOUR_NAMES, PIPELINE_PATH, SHAPES, make_caption

SANDBOX_BASE_MODEL = "sandbox"
TRAIN_SET, EVAL_SET = "sandbox-train", "sandbox-eval"
SANDBOX_DEFAULTS = {"scheduler": "ddim", "steps": 20, "guidance_scale": 5.0, "width": 32, "height": 32}


def sandbox_prompts() -> dict[str, list[dict]]:
    """Every colour × shape × size caption, split so both splits cover every colour and every shape:
    a (colour, shape) combination is an eval combination when (colour index + shape index) % 4 == 0.
    """
    splits: dict[str, list[dict]] = {"train": [], "eval": []}
    for ci, colour in enumerate(COLOUR_NAMES):
        for si, shape in enumerate(SHAPES):
            split = "eval" if (ci + si) % 4 == 0 else "train"
            for size in (None, "small", "large"):
                tags = [colour, shape, *([size] if size else [])]
                splits[split].append({"text": make_caption(colour, shape, size), "tags": tags})
    return splits


def sandbox_source() -> str:
    return str(PIPELINE_PATH)

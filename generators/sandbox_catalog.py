"""The sandboxes as platform data: their base models and the train/eval prompt sets they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generators.sandbox import COLOUR_NAMES, FLOW_PIPELINE_PATH, PIPELINE_PATH, SHAPES, make_caption

SANDBOX_BASE_MODEL = "sandbox"
FLOW_SANDBOX_BASE_MODEL = "sandbox-flow"
TRAIN_SET, EVAL_SET = "sandbox-train", "sandbox-eval"
SANDBOX_DEFAULTS = {"scheduler": "ddim", "steps": 20, "guidance_scale": 5.0, "width": 32, "height": 32}
FLOW_SANDBOX_DEFAULTS = {"scheduler": "flow_euler", "steps": 10, "guidance_scale": 5.0, "width": 32, "height": 32}


@dataclass(frozen=True)
class SandboxModel:
    """A bundled sandbox checkpoint and how ``sandbox_setup`` registers it."""

    base_model: str
    path: Path
    pipeline_class: str
    defaults: dict[str, Any]
    description: str


# The bundled sandboxes by kind: "ddim" (a Stable Diffusion UNet: DDPO, Diffusion-DPO/KTO) and "flow" (an SD3
# flow-matching transformer: Flow-GRPO), both trained on the same shapes world and prompts.
SANDBOXES: dict[str, SandboxModel] = {
    "ddim": SandboxModel(
        SANDBOX_BASE_MODEL,
        PIPELINE_PATH,
        "StableDiffusionPipeline",
        SANDBOX_DEFAULTS,
        "Tiny coloured-shapes text-to-image model bundled with the platform (32×32, CPU).",
    ),
    "flow": SandboxModel(
        FLOW_SANDBOX_BASE_MODEL,
        FLOW_PIPELINE_PATH,
        "StableDiffusion3Pipeline",
        FLOW_SANDBOX_DEFAULTS,
        "Tiny flow-matching model of the SD3 family on the same shapes world (MMDiT, two CLIPs and a T5; 32×32, "
        "CPU): fine-tuned with Flow-GRPO.",
    ),
}


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


def sandbox_source(kind: str = "ddim") -> str:
    return str(SANDBOXES[kind].path)

"""The sandbox world: a tiny, offline, CPU-trained text-to-image world of coloured shapes.

No Django imports here: the package is usable from plain Python.
"""

from pathlib import Path

from .dataset import (
    COLOUR_NAMES,
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    SIZE_WORDS,
    VOCABULARY,
    make_caption,
    parse_caption,
)

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights"
PIPELINE_PATH = WEIGHTS_PATH / "pipeline"
FLOW_PIPELINE_PATH = WEIGHTS_PATH / "flow-pipeline"  # the flow sandbox: a tiny SD3 (flow_models, flow_train)
CLIP_PATH = WEIGHTS_PATH / "clip"
UNCONDITIONAL_PROMPT = ""
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0

__all__ = [
    "CLIP_PATH",
    "COLOURS",
    "COLOUR_NAMES",
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "FLOW_PIPELINE_PATH",
    "IMAGE_SIZE",
    "PIPELINE_PATH",
    "SHAPES",
    "SIZE_WORDS",
    "UNCONDITIONAL_PROMPT",
    "VOCABULARY",
    "WEIGHTS_PATH",
    "make_caption",
    "parse_caption",
]

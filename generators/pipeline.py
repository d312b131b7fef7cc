"""Loading diffusers text-to-image pipelines and generating reproducible images. No Django imports.

- :func:`load_pipeline` loads any diffusers text-to-image pipeline (SD 1.x/2.x, SDXL, SD3, FLUX...) from a hub
  id or a local folder with ``from_pretrained``, on CUDA in fp16/bf16 or on the CPU in fp32, and
  attaches a LoRA adapter in the diffusers/peft format that ``pipe.load_lora_weights`` reads.
- :class:`PipelineCache` keeps a few loaded pipelines per process, keyed by :class:`PipelineSpec`.
- :func:`generate_images` makes one image per (prompt, seed) with one ``torch.Generator`` per image,
  so an image depends on its own inputs only, never on the batch it was made in.
- :func:`generate_images_splitting_on_oom` halves a batch that does not fit in GPU memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import devices
from generators.pipeline_classes import FLOW_SCHEDULERS

log = logging.getLogger(__name__)

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "flow_euler": "FlowMatchEulerDiscreteScheduler",  # flow-matching models (SD3/SD3.5, FLUX): their own sampler
}
DTYPES = ("auto", "fp32", "fp16", "bf16")
MAX_SIDE = 2048
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # the file diffusers' load_lora_weights(folder) reads


class PipelineLoadError(Exception):
    """The checkpoint or adapter could not be loaded; the message says which and why."""


class GenerationOutOfMemory(Exception):
    """Even a single image does not fit in the device's memory."""


@dataclass(frozen=True)
class SamplerSettings:
    """Everything besides (model, prompt, seed) that determines an image."""

    scheduler: str = "ddim"
    steps: int = 20
    guidance_scale: float = 5.0
    width: int = 512
    height: int = 512
    negative_prompt: str = ""
    eta: float = 0.0
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"Unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}.")
        for side in ("width", "height"):
            value = getattr(self, side)
            if value % 8 or not 8 <= value <= MAX_SIDE:
                raise ValueError(f"{side} must be a multiple of 8 between 8 and {MAX_SIDE}, not {value}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """sha256 of the canonical JSON: the settings part of an image's identity."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class PipelineSpec:
    """What identifies a loaded pipeline: checkpoint, optional adapter, device and precision."""

    source: str
    revision: str | None = None
    pipeline_class: str = "AutoPipelineForText2Image"
    adapter_path: str | None = None
    adapter_weight_name: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    extra: tuple = field(default_factory=tuple)


def resolve_device(device: str = "auto") -> str:
    try:
        return devices.resolve_device(device)
    except devices.DeviceUnavailable as exc:
        raise PipelineLoadError(str(exc)) from exc


def resolve_dtype_name(dtype: str, device: str) -> str:
    """``auto`` is fp16 on CUDA and fp32 on the CPU; half precision on the CPU is refused."""
    if dtype not in DTYPES:
        raise PipelineLoadError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if dtype == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if dtype == "fp16" and device == "cpu":
        raise PipelineLoadError("fp16 is not supported on the CPU; use fp32 (or bf16).")
    return dtype


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def diffusers_pipeline_class(name: str) -> type:
    """The diffusers pipeline class called ``name`` (a DiffusionPipeline or an AutoPipeline), else an error."""
    import diffusers

    found = getattr(diffusers, name, None) if name.isidentifier() else None
    is_pipeline = isinstance(found, type) and (
        issubclass(found, diffusers.DiffusionPipeline) or found.__module__ == "diffusers.pipelines.auto_pipeline"
    )
    if not is_pipeline:
        raise PipelineLoadError(f"{name!r} is not a diffusers pipeline class.")
    return found


def load_pipeline(spec: PipelineSpec):
    """Load ``spec.source`` (hub id or local folder) with ``from_pretrained`` and attach the adapter."""
    device = resolve_device(spec.device)
    dtype = resolve_dtype_name(spec.dtype, device)
    pipeline_class = diffusers_pipeline_class(spec.pipeline_class)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(dtype)}
    if spec.revision:
        kwargs["revision"] = spec.revision
    try:
        pipe = pipeline_class.from_pretrained(spec.source, **kwargs)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError, HF hub errors...
        where = "local folder" if Path(spec.source).exists() else "hub id"
        raise PipelineLoadError(f"Could not load the checkpoint {spec.source!r} ({where}): {exc}") from exc
    if getattr(pipe, "safety_checker", None) is not None:
        pipe.safety_checker = None  # images are judged by people and reward models, not filtered here
    if spec.adapter_path:
        try:
            pipe.load_lora_weights(spec.adapter_path, weight_name=spec.adapter_weight_name, adapter_name="version")
        except Exception as exc:
            raise PipelineLoadError(f"Could not load the LoRA adapter {spec.adapter_path!r}: {exc}") from exc
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class PipelineCache:
    """A small per-process LRU of loaded pipelines keyed by :class:`PipelineSpec`."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._pipes: OrderedDict[PipelineSpec, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, spec: PipelineSpec):
        with self._lock:
            if spec in self._pipes:
                self._pipes.move_to_end(spec)
                return self._pipes[spec]
            pipe = load_pipeline(spec)
            self.loads += 1
            self._pipes[spec] = pipe
            while len(self._pipes) > self.capacity:
                _, evicted = self._pipes.popitem(last=False)
                del evicted
                _empty_cuda_cache()
            return pipe

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()
            _empty_cuda_cache()


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


default_cache = PipelineCache()


def is_flow_matching(pipe) -> bool:
    """Whether ``pipe`` samples by flow matching (SD3/SD3.5, FLUX: a ``FlowMatch...`` scheduler)."""
    return type(getattr(pipe, "scheduler", None)).__name__.startswith("FlowMatch")


def check_scheduler_fits(pipe, name: str) -> None:
    """A ValueError saying what to use when ``name`` cannot sample ``pipe``: a flow-matching model only samples
    with ``flow_euler``, and ``flow_euler`` only samples flow-matching models."""
    flow = is_flow_matching(pipe)
    if flow and name not in FLOW_SCHEDULERS:
        raise ValueError(
            f"{type(pipe).__name__} is a flow-matching model: its scheduler is {' or '.join(FLOW_SCHEDULERS)}, "
            f"not {name} (set scheduler in the request or the base model's default_settings)"
        )
    if not flow and name in FLOW_SCHEDULERS:
        raise ValueError(f"{name} samples flow-matching models (SD3, FLUX) only; {type(pipe).__name__} is not one")


def max_sequence_length(pipe) -> int | None:
    """The T5 token length to encode prompts with, for pipelines that take ``max_sequence_length`` (SD3: 256,
    FLUX: 512 by default): the pipeline's default, or its T5 tokenizer's own length where that is shorter (the
    flow sandbox's 16 tokens); None for pipelines without the parameter."""
    import inspect

    parameter = inspect.signature(pipe.__call__).parameters.get("max_sequence_length")
    if parameter is None or not isinstance(parameter.default, int):
        return None
    lengths = [
        tokenizer.model_max_length
        for tokenizer in (getattr(pipe, "tokenizer_3", None), getattr(pipe, "tokenizer_2", None))
        if "T5" in type(tokenizer).__name__ and isinstance(getattr(tokenizer, "model_max_length", None), int)
    ]
    return min([parameter.default, *lengths[:1]])


def use_scheduler(pipe, name: str) -> None:
    """Swap the pipeline's scheduler for ``name``, keeping the checkpoint's noise schedule."""
    import diffusers

    check_scheduler_fits(pipe, name)
    class_name = SCHEDULERS[name]
    if type(pipe.scheduler).__name__ != class_name:
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config)


def native_image_size(pipe) -> int:
    """The checkpoint's native image side in pixels: the pipeline's default sample size (SDXL, SD3, FLUX), else
    its UNet's or transformer's ``sample_size``, times the VAE's scale factor."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    denoiser_size = getattr(getattr(denoiser, "config", None), "sample_size", None)
    sample = getattr(pipe, "default_sample_size", None) or denoiser_size
    if isinstance(sample, list | tuple) and sample:
        sample = sample[0]
    if not isinstance(sample, int) or sample <= 0:
        raise PipelineLoadError(f"{type(pipe).__name__} does not say its native image size.")
    return sample * int(getattr(pipe, "vae_scale_factor", 1) or 1)


def generate_images(pipe, prompts: Sequence[str], seeds: Sequence[int], settings: SamplerSettings) -> list:
    """One PIL image per (prompt, seed); each image has its own generator, so batching changes nothing."""
    import torch

    if len(prompts) != len(seeds):
        raise ValueError("prompts and seeds must have the same length")
    use_scheduler(pipe, settings.scheduler)
    generator_device = "cpu" if pipe.device.type == "cpu" else pipe.device
    generators = [torch.Generator(device=generator_device).manual_seed(int(seed)) for seed in seeds]
    kwargs: dict[str, Any] = {
        "prompt": list(prompts),
        "num_inference_steps": settings.steps,
        "guidance_scale": settings.guidance_scale,
        "width": settings.width,
        "height": settings.height,
        "generator": generators,
        "output_type": "pil",
    }
    if settings.negative_prompt:
        kwargs["negative_prompt"] = [settings.negative_prompt] * len(prompts)
    if settings.scheduler in ("ddim", "ddpm"):
        kwargs["eta"] = settings.eta
    sequence_length = max_sequence_length(pipe)
    if sequence_length is not None:
        kwargs["max_sequence_length"] = sequence_length
    with torch.inference_mode():
        return list(pipe(**kwargs).images)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def generate_images_splitting_on_oom(
    pipe, prompts: Sequence[str], seeds: Sequence[int], settings: SamplerSettings
) -> list:
    """Like :func:`generate_images`, but a batch that runs out of device memory is split in halves
    and retried; only a single image that does not fit raises :class:`GenerationOutOfMemory`.
    """
    try:
        return generate_images(pipe, prompts, seeds, settings)
    except (RuntimeError, MemoryError) as exc:
        if not _is_out_of_memory(exc):
            raise
        _empty_cuda_cache()
        if len(prompts) == 1:
            raise GenerationOutOfMemory(
                f"One {settings.width}×{settings.height} image at {settings.dtype} does not fit in the device's "
                "memory; use a smaller size, fp16/bf16, or a larger GPU."
            ) from exc
        half = len(prompts) // 2
        log.warning("out of memory on a batch of %s; retrying as %s + %s", len(prompts), half, len(prompts) - half)
        return generate_images_splitting_on_oom(
            pipe, prompts[:half], seeds[:half], settings
        ) + generate_images_splitting_on_oom(pipe, prompts[half:], seeds[half:], settings)


def png_bytes(image) -> bytes:
    """Deterministic PNG encoding (no metadata): the same pixels always give the same bytes."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()

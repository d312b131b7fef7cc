"""LoRA adapters on the denoiser (a UNet, an SD3 or a FLUX transformer) through peft, saved in the diffusers LoRA
format.

- :func:`add_lora` attaches a fresh adapter (rank, alpha, target modules) or continues a parent adapter read
  from a diffusers LoRA folder; the trainable LoRA weights are kept in fp32 whatever the UNet's dtype.
- :func:`save_lora` writes ``pytorch_lora_weights.safetensors`` that the base pipeline's ``load_lora_weights``
  reads (``StableDiffusionPipeline`` for a UNet, ``StableDiffusion3Pipeline`` for an SD3 transformer, ``FluxPipeline``
  for a FLUX one). The default targets (``to_q``, ``to_k``, ``to_v``, ``to_out.0``) exist in all three: in SD3's and
  FLUX's joint blocks they are the image stream's projections (the text stream's are ``add_q_proj``, ``add_k_proj``,
  ``add_v_proj``, ``to_add_out``), and FLUX's single-stream blocks have ``to_q``/``to_k``/``to_v`` (no ``to_out``).
- :func:`lora_state_dict` / :func:`load_lora_state_dict` move the raw peft weights in and out of checkpoints.
- :func:`adapter_disabled` runs the UNet as the base model (the KL reference) for the duration of a ``with``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from generators.pipeline import LORA_WEIGHT_NAME

ADAPTER_NAME = "default"
DEFAULT_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
WEIGHT_NAME = LORA_WEIGHT_NAME


def add_lora(
    unet: torch.nn.Module,
    rank: int = 4,
    alpha: float | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    parent_dir: str | Path | None = None,
    init_seed: int = 0,
) -> list[torch.nn.Parameter]:
    """Attach a LoRA adapter to ``unet`` (frozen otherwise) and return its trainable fp32 parameters.

    With ``parent_dir`` the adapter is the parent's (its rank, alpha and targets), so training continues it and
    the saved result still loads on the base pipeline on its own. Otherwise a fresh adapter with B = 0 (the
    model starts as the base model), A drawn from ``init_seed`` so that every process starts identical.
    """
    from peft import LoraConfig

    unet.requires_grad_(False)
    if parent_dir is not None:
        unet.load_lora_adapter(
            str(parent_dir), prefix=_prefix(unet), adapter_name=ADAPTER_NAME, weight_name=WEIGHT_NAME
        )
    else:
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            init_lora_weights="gaussian",
            target_modules=list(targets),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            unet.add_adapter(config, adapter_name=ADAPTER_NAME)
    params = []
    for name, param in unet.named_parameters():
        if "lora_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
            params.append(param)
    if not params:
        raise ValueError(f"No LoRA parameters were created: no module of the UNet matches {list(targets)}.")
    return params


def lora_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights as peft names them (for checkpoints), copied to the CPU."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def load_lora_state_dict(unet: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put checkpointed adapter weights back; every key must match."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(unet, state, adapter_name=ADAPTER_NAME)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"The checkpoint's adapter does not match this UNet (unexpected keys: {unexpected[:3]}).")


def save_lora(unet: torch.nn.Module, directory: str | Path) -> Path:
    """Write the adapter in the diffusers LoRA format; returns the folder."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    config = unet.peft_config[ADAPTER_NAME]
    metadata = config.to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    prefix = _prefix(unet)
    _pipeline_class(unet).save_lora_weights(
        directory,
        weight_name=WEIGHT_NAME,
        **{
            f"{prefix}_lora_layers": convert_state_dict_to_diffusers(state),
            f"{prefix}_lora_adapter_metadata": metadata,
        },
    )
    return directory


def _prefix(denoiser: torch.nn.Module) -> str:
    """Where the adapter's keys live in a diffusers LoRA file: ``unet`` or ``transformer``."""
    from diffusers import UNet2DConditionModel

    return "unet" if isinstance(denoiser, UNet2DConditionModel) else "transformer"


def _pipeline_class(denoiser: torch.nn.Module):
    """The pipeline class whose ``save_lora_weights`` writes this denoiser's adapter."""
    from diffusers import (
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
    )

    if isinstance(denoiser, SD3Transformer2DModel):
        return StableDiffusion3Pipeline
    if isinstance(denoiser, FluxTransformer2DModel):
        return FluxPipeline
    if _prefix(denoiser) == "unet":
        return StableDiffusionPipeline
    raise ValueError(f"saving a LoRA adapter of a {type(denoiser).__name__} is not supported (UNets, SD3, FLUX)")


@contextlib.contextmanager
def adapter_disabled(unet: torch.nn.Module) -> Iterator[None]:
    """Run the UNet as the base model inside the block (used as the KL reference)."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()

"""Settings of a preference fine-tune (Diffusion-DPO or Diffusion-KTO): defaults and checks that name the field.

The defaults are tuned for the sandbox model (1 M-parameter UNet, 32×32, CPU): LoRA rank 4 on the attention,
batch 16, β 500, lr 3e-3, 1,000 steps. For Stable Diffusion see ``SD_RECOMMENDED`` (Wallace et al.'s β and the
diffusers example's learning rate, with LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import MAX_SEED, ConfigError, SettingsDict, _check

ALGORITHMS = ("diffusion_dpo", "diffusion_kto")
TIE_POLICIES = ("drop", "soft")  # DPO: a tie is left out, or a pair with the soft label 0.5

INT_RANGES: dict[str, tuple[int, int]] = {
    "train_steps": (1, 1_000_000),
    "batch_size": (1, 4096),
    "gradient_accumulation": (1, 1024),
    "lora_rank": (1, 1024),
    "checkpoint_every": (1, 1_000_000),
    "eval_every": (0, 1_000_000),
    "eval_images_per_prompt": (1, 256),
    "sample_steps": (1, 1000),
    "height": (0, 4096),
    "width": (0, 4096),
    "grid_prompts": (0, 256),
    "encode_batch_size": (1, 4096),
    "seed": (0, MAX_SEED),
    "eval_seed": (0, MAX_SEED),
}

SD_RECOMMENDED: dict[str, Any] = {
    "beta": 5000.0,  # 2500 for SDXL
    "learning_rate": 1e-5,
    "batch_size": 8,
    "gradient_accumulation": 16,
    "lora_rank": 8,
    "mixed_precision": "fp16",
    "gradient_checkpointing": True,
    "sample_steps": 50,
    "guidance_scale": 7.5,
}


@dataclass(frozen=True)
class PreferenceTuneConfig(SettingsDict):
    """Hyper-parameters of one Diffusion-DPO / Diffusion-KTO run (see ``finetune/README.md``)."""

    algorithm: str = "diffusion_dpo"
    train_steps: int = 1000  # optimizer steps
    batch_size: int = 16  # pairs (DPO) or images (KTO) per micro-batch, over all processes
    gradient_accumulation: int = 1
    beta: float = 500.0
    learning_rate: float = 3e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-4
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    ties: str = "drop"  # drop | soft (DPO: a tie is a pair with label 0.5)
    desirable_weight: float = 1.0  # KTO λ_D
    undesirable_weight: float = 1.0  # KTO λ_U
    lora_rank: int = 4
    lora_alpha: float = 0.0  # 0: equal to the rank
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    height: int = 0  # 0: the model's native size
    width: int = 0
    encode_batch_size: int = 16
    checkpoint_every: int = 100
    eval_every: int = 250
    eval_images_per_prompt: int = 2
    eval_seed: int = 1_000_000
    sample_steps: int = 20  # DDIM steps of the evaluation images (the sandbox default)
    guidance_scale: float = 5.0
    grid_prompts: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
        self._check_shared(INT_RANGES)
        _check("beta", self.beta, float, low=0.0, high=1e6, low_open=True)
        _check("desirable_weight", self.desirable_weight, float, low=0.0, high=100.0, low_open=True)
        _check("undesirable_weight", self.undesirable_weight, float, low=0.0, high=100.0, low_open=True)
        _check("guidance_scale", self.guidance_scale, float, low=1.0, high=50.0)
        _check("gradient_checkpointing", self.gradient_checkpointing, bool)
        if self.ties not in TIE_POLICIES:
            raise ConfigError("ties", f"must be one of {', '.join(TIE_POLICIES)}")

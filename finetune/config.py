"""The DDPO run configuration: defaults, validation with messages that name the field.

The defaults are tuned for the sandbox model (0.8 M-parameter UNet, 32×32, CPU) and work there without tuning.
For Stable Diffusion 1.x/2.x see ``SD_RECOMMENDED`` (the DDPO paper's settings).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .advantages import MODES

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
ADVANTAGE_STATS = MODES  # the advantage baselines of finetune/advantages.py
ALGORITHMS = ("auto", "ddpo", "flow_grpo")
MAX_SEED = 2**31 - 1
MODULE_NAME = re.compile(r"[A-Za-z0-9_.]{1,200}")  # a LoRA target: a module name or a dotted path inside a block

# (lowest, highest) of every integer setting: a run config outside them is a 400 naming the field.
INT_RANGES: dict[str, tuple[int, int]] = {
    "epochs": (1, 100_000),
    "samples_per_epoch": (1, 65_536),
    "images_per_prompt": (1, 1024),
    "sample_batch_size": (1, 1024),
    "train_batch_size": (1, 1024),
    "steps": (1, 1000),
    "inner_epochs": (1, 100),
    "lora_rank": (1, 1024),
    "stat_buffer_size": (1, 1_000_000),
    "stat_min_count": (1, 1_000_000),
    "eval_images_per_prompt": (1, 256),
    "reward_workers": (1, 64),
    "height": (0, 4096),
    "width": (0, 4096),
    "timesteps_per_forward": (0, 1000),
    "timestep_window": (0, 1000),
    "eval_every": (0, 100_000),
    "grid_prompts": (0, 256),
    "seed": (0, MAX_SEED),
    "eval_seed": (0, MAX_SEED),
}

# Black et al. 2023 / kvablack/ddpo-pytorch for SD 1.x on 8 GPUs (samples and batches are per process).
SD_RECOMMENDED: dict[str, Any] = {
    "steps": 50,
    "guidance_scale": 5.0,
    "samples_per_epoch": 256,
    "sample_batch_size": 8,
    "train_batch_size": 4,
    "learning_rate": 3e-4,
    "clip_range": 1e-4,
    "inner_epochs": 1,
    "timestep_fraction": 1.0,
    "timesteps_per_forward": 1,
    "lora_rank": 4,
    "mixed_precision": "fp16",
}


class ConfigError(ValueError):
    """A bad configuration; ``field_name`` (also ``field``) names the offending key."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field_name = self.field = field_name


class SettingsDict:
    """``from_dict`` / ``to_dict``, the shared checks and the mixed-precision rule of the trainers' frozen config
    dataclasses."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None):
        """Build from a JSON-like mapping; unknown keys and bad values raise :class:`ConfigError`."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError("config", "must be a mapping of field names to values")
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown field (known fields: {', '.join(sorted(known))})")
        if isinstance(values.get("lora_targets"), list):
            values["lora_targets"] = tuple(values["lora_targets"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora_targets"] = list(self.lora_targets)
        return data

    def _check_shared(self, int_ranges: Mapping[str, tuple[int, int]]) -> None:
        """The checks every trainer config shares: ints in range, sizes multiple of 8, the optimizer, LoRA, mixed
        precision (integers given for float fields become floats first)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        for name, (low, high) in int_ranges.items():
            _check(name, getattr(self, name), int, low=low, high=high)
        for name in ("height", "width"):
            if getattr(self, name) % 8:
                raise ConfigError(name, "must be a multiple of 8 (or 0 for the model's size)")
        _check("learning_rate", self.learning_rate, float, low=0.0, high=1.0, low_open=True)
        _check("adam_beta1", self.adam_beta1, float, low=0.0, high=1.0, high_open=True)
        _check("adam_beta2", self.adam_beta2, float, low=0.0, high=1.0, high_open=True)
        _check("adam_weight_decay", self.adam_weight_decay, float, low=0.0, high=1.0)
        _check("adam_epsilon", self.adam_epsilon, float, low=0.0, high=1.0, low_open=True)
        _check("max_grad_norm", self.max_grad_norm, float, low=0.0, high=1e6, low_open=True)
        _check("lora_alpha", self.lora_alpha, float, low=0.0, high=1e6)
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError("mixed_precision", f"must be one of {', '.join(MIXED_PRECISION)}")
        object.__setattr__(self, "lora_targets", check_lora_targets(self.lora_targets))

    def resolved_mixed_precision(self, device_type: str) -> str:
        """``auto`` is fp16 on CUDA and full precision elsewhere."""
        if self.mixed_precision == "auto":
            return "fp16" if device_type == "cuda" else "no"
        return self.mixed_precision


@dataclass(frozen=True)
class DDPOConfig(SettingsDict):
    """Hyper-parameters of one DDPO fine-tuning run (see ``finetune/README.md``)."""

    epochs: int = 80
    samples_per_epoch: int = 32  # over all processes
    images_per_prompt: int = 4  # samples of each drawn prompt per epoch (8 prompts × 4 images by default)
    sample_batch_size: int = 16  # per process and forward pass; rewards of one batch overlap the next's sampling
    train_batch_size: int = 8
    algorithm: str = "auto"  # ddpo, flow_grpo, or auto: ddpo for a UNet, flow_grpo for a flow transformer
    steps: int = 10  # sampling steps (DDIM, or the flow SDE's)
    guidance_scale: float = 5.0
    eta: float = 1.0  # DDPO: DDIM's η while sampling for training
    noise_level: float = 0.7  # Flow-GRPO: the SDE's noise level a (σ_t = a·√(t / (1 − t)))
    height: int = 0  # 0: the model's native size
    width: int = 0
    learning_rate: float = 5e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-4
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    clip_range: float = 1e-2
    adv_clip_max: float = 5.0
    inner_epochs: int = 2
    timestep_fraction: float = 1.0
    timestep_window: int = 0  # train only the first N sampling steps (high noise: layout forms there); 0: all
    timesteps_per_forward: int = 0  # timesteps stacked in one UNet pass (gradients accumulate over passes); 0: all
    kl_beta: float = 0.0
    ema_decay: float = 0.0  # evaluate and save an average of the adapter over epochs (finetune/ema.py); 0: off
    lora_rank: int = 4
    lora_alpha: float = 0.0  # 0: equal to the rank
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    advantage_stats: str = "group"  # group, batch or history (finetune/advantages.py)
    stat_buffer_size: int = 32  # history only
    stat_min_count: int = 16  # history only
    eval_every: int = 5
    eval_images_per_prompt: int = 2
    eval_seed: int = 1_000_000
    grid_prompts: int = 8
    seed: int = 0
    mixed_precision: str = "auto"
    reward_workers: int = 1

    def __post_init__(self) -> None:
        self._check_shared(INT_RANGES)
        _check("guidance_scale", self.guidance_scale, float, low=1.0, high=50.0)
        _check("eta", self.eta, float, low=0.0, high=1.0, low_open=True)
        _check("noise_level", self.noise_level, float, low=0.0, high=2.0, low_open=True)
        if self.algorithm not in ALGORITHMS:
            raise ConfigError("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
        _check("clip_range", self.clip_range, float, low=0.0, high=1.0, low_open=True)
        _check("adv_clip_max", self.adv_clip_max, float, low=0.0, high=1e6, low_open=True)
        _check("timestep_fraction", self.timestep_fraction, float, low=0.0, high=1.0, low_open=True)
        _check("kl_beta", self.kl_beta, float, low=0.0, high=1e6)
        _check("ema_decay", self.ema_decay, float, low=0.0, high=1.0, high_open=True)
        if self.advantage_stats not in ADVANTAGE_STATS:
            raise ConfigError("advantage_stats", f"must be one of {', '.join(ADVANTAGE_STATS)}")
        if self.stat_min_count > self.stat_buffer_size:
            raise ConfigError("stat_min_count", "cannot exceed stat_buffer_size")
        if self.advantage_stats == "group" and self.images_per_prompt < 2:
            raise ConfigError("images_per_prompt", "group advantages compare images of one prompt: use at least 2")
        if self.samples_per_epoch % self.images_per_prompt:
            raise ConfigError("images_per_prompt", f"must divide samples_per_epoch ({self.samples_per_epoch})")
        if self.samples_per_epoch % self.train_batch_size:
            raise ConfigError("train_batch_size", f"must divide samples_per_epoch ({self.samples_per_epoch})")


def check_lora_targets(targets: Any) -> tuple[str, ...]:
    """The LoRA target module names as a tuple; anything but 1 to 64 module names is a :class:`ConfigError`."""
    if (
        isinstance(targets, str)
        or not isinstance(targets, tuple | list)
        or not 1 <= len(targets) <= 64
        or not all(isinstance(t, str) and MODULE_NAME.fullmatch(t) for t in targets)
    ):
        raise ConfigError("lora_targets", "must be a list of 1 to 64 module names such as 'to_q' or 'to_out.0'")
    return tuple(targets)


def _check(
    name: str,
    value: Any,
    kind: type,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise ConfigError(name, f"must be {'an integer' if kind is int else 'a number' if kind is float else 'a bool'}")
    if kind is bool:
        return
    if value != value:  # NaN
        raise ConfigError(name, "must be a number")
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(name, f"must be {'>' if low_open else '≥'} {low:g}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(name, f"must be {'<' if high_open else '≤'} {high:g}")

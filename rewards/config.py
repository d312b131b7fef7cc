"""Reward-model training settings: one definition of every field, its default and its range (no torch here).

The ``reward_train`` run config (``rewards/run_configs.py``) takes these fields at its top level and has them
checked by :meth:`RewardTrainConfig.from_dict`, so the web process and the trainer accept exactly the same
values, and an error names the field. Checks that need the worker's hardware (is there a CUDA device?) are in
:meth:`RewardTrainConfig.validate`, which the trainer calls.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")
DEVICES = ("auto", "cpu", "cuda")
HEAD_KINDS = ("linear", "mlp", "attention", "patch_linear", "patch_mlp", "patch_set")  # rewards.heads builds them
HEADS = ("none", *HEAD_KINDS)
DEFAULT_HEAD = "patch_linear"  # chosen by rewards.sandbox_experiment --compare (docs/benchmarks.md, issue 15)
# How a head trains by default (rewards.heads.HeadConfig and the head_* settings below share these).
HEAD_DEFAULTS = {"steps": 500, "lr": 1e-2, "weight_decay": 1e-2, "hidden": 128, "dropout": 0.1, "batch_size": 128}


SEARCH_GRIDS = ("heads", "all")


class RewardTrainConfigError(ValueError):
    """A bad training setting: ``field_name`` names it, ``reason`` says what it accepts (the message: both)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


@dataclass(frozen=True)
class Rule:
    """What one setting accepts: a type, and a range (ends closed unless ``*_open``) or choices; ``None`` too
    where ``nullable``."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    max_length: int = 500

    def describe(self) -> str:
        """In words, e.g. ``an integer in [1, 4096]`` or ``null or a number in (0, 1e+06]``."""
        if self.choices:
            text = f"one of {', '.join(self.choices)}"
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = f"a non-empty string of at most {self.max_length} characters"
        else:
            noun = "an integer" if self.kind is int else "a number"
            low, high = (f"{end:d}" if self.kind is int else f"{end:g}" for end in (self.low, self.high))
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"{noun} in {left}{low}, {high}{right}"
        return f"null or {text}" if self.nullable else text

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is str:
            good_text = isinstance(value, str) and 0 < len(value) <= self.max_length
            return good_text and (not self.choices or value in self.choices)
        if not isinstance(value, int if self.kind is int else int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # (an int beyond a float's range is fine here)
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


def _setting(default: Any, rule: Rule, help_text: str = "") -> Any:
    """A dataclass field whose metadata carries its :class:`Rule` and a line of help."""
    return dataclasses.field(default=default, metadata={"rule": rule, "help": help_text})


def _steps(low: int, nullable: bool = False) -> Rule:
    return Rule(int, low, 1_000_000, nullable=nullable)


@dataclass(frozen=True)
class RewardTrainConfig:
    """Training settings, checked when built (an instance is always in range; the error names the field).

    The default option is a ``patch_linear`` head ensemble on the frozen backbone (chosen by
    ``python -m rewards.sandbox_experiment --compare --max-votes 1000``: the best held-out accuracy of the options
    on the position and area preferences, seconds to fit; docs/benchmarks.md, "Reward model options"). The
    fine-tune settings (``head="none"``) are tuned for the sandbox CLIP on CPU (about 30 s of one core for
    200 steps × 64 pairs, whole model, lr 1e-3; ``trainable_layers=1`` is ~40% faster at 1-3 points less
    accuracy). For CLIP-H / PickScore checkpoints start from :meth:`pickscore`.
    """

    backbone: str | None = _setting(
        None,
        Rule(str, nullable=True),
        "CLIP hub id or local folder (required to train; runs pass the one they resolved)",
    )
    processor: str | None = _setting(
        None, Rule(str, nullable=True), "where the tokenizer/image processor live, if not beside the weights"
    )
    trainable_layers: int | None = _setting(
        None, Rule(int, 0, 100, nullable=True), "null: both towers; N: the last N layers + heads (HPSv2)"
    )
    lr: float = _setting(1e-3, Rule(float, 0.0, 1.0, low_open=True, high_open=True), "peak learning rate")
    weight_decay: float = _setting(0.1, Rule(float, 0.0, 10.0), "AdamW decay (not on biases, norms, τ)")
    warmup_steps: int = _setting(30, _steps(0), "linear warm-up steps")
    max_steps: int | None = _setting(
        200, Rule(int, 1, 10_000_000, nullable=True), "total optimizer steps (null: train for `epochs`)"
    )
    epochs: float | None = _setting(
        None, Rule(float, 0.0, 10_000.0, low_open=True, nullable=True), "epochs, when max_steps is null"
    )
    batch_size: int = _setting(64, Rule(int, 1, 4096), "pairs per step and process")
    grad_clip: float | None = _setting(
        1.0, Rule(float, 0.0, 1e6, low_open=True, nullable=True), "gradient norm clip (null: none)"
    )
    scheduler: str = _setting("cosine", Rule(str, choices=SCHEDULERS), "decay after warm-up")
    seed: int = _setting(0, Rule(int, 0, 2**31 - 1), "data split, data order and initialisation")
    mixed_precision: str = _setting("no", Rule(str, choices=MIXED_PRECISION), "autocast precision (fp16 needs CUDA)")
    eval_every: int = _setting(25, _steps(1), "validation and best-checkpoint choice every N steps (and at the end)")
    checkpoint_every: int | None = _setting(
        None, _steps(1, nullable=True), "resume checkpoint every N steps (null: at each evaluation)"
    )
    log_every: int = _setting(10, _steps(1), "loss/lr metrics, progress and the stop check every N steps")
    eval_batch_size: int = _setting(256, Rule(int, 1, 4096), "prompts or images encoded at once when evaluating")
    device: str = _setting("auto", Rule(str, choices=DEVICES), "where to train (auto: CUDA when there is one)")
    deterministic: bool = _setting(False, Rule(bool), "bit-exact resume on CUDA (slower kernels)")
    # -- frozen-backbone heads (rewards.heads, rewards.quick): trained in seconds on cached CLIP features ------------
    head: str = _setting(
        DEFAULT_HEAD,
        Rule(str, choices=HEADS),
        "none: fine-tune CLIP (trainable_layers: whole or last N); linear, mlp (pooled features), patch_linear, "
        "patch_mlp, patch_set, attention (patch tokens): an ensemble of small heads on the frozen CLIP's features",
    )
    search: bool = _setting(
        False,
        Rule(bool),
        "try a small grid (head kinds and settings, whole-model and last-layer CLIP fine-tunes) and keep the best "
        "by validation accuracy; the result lists every candidate",
    )
    search_grid: str = _setting(
        "all",
        Rule(str, choices=SEARCH_GRIDS),
        "what a search tries: heads (the frozen-backbone heads only, seconds each) or all (also the CLIP fine-tunes)",
    )
    search_folds: int = _setting(
        5,
        Rule(int, 0, 20),
        "how a heads search chooses: by k-fold cross-validation over the training and validation pairs, folds "
        "grouped by prompt (k = this; one member per fold, then the winner is fitted as usual), or 0: by the "
        "validation split alone; a search that includes CLIP fine-tunes (search_grid all) always uses validation",
    )
    search_refit: bool = _setting(
        True,
        Rule(bool),
        "after a cross-validated heads search, fit the winner on the training and validation pairs together "
        "(temperature out-of-bag, tie threshold from the cross-validation's pooled predictions); false: on the "
        "training pairs alone, calibrated and thresholded on the validation split",
    )
    ensemble_size: int = _setting(
        5, Rule(int, 1, 32), "head members, each on a bootstrap resample (their spread: an uncertainty)"
    )
    calibrate: bool = _setting(
        True, Rule(bool), "fit the head ensemble's temperature on the validation split (out-of-bag after a refit)"
    )
    head_steps: int = _setting(HEAD_DEFAULTS["steps"], Rule(int, 1, 100_000), "optimizer steps of each head member")
    head_lr: float = _setting(
        HEAD_DEFAULTS["lr"], Rule(float, 0.0, 1.0, low_open=True, high_open=True), "head learning rate"
    )
    head_weight_decay: float = _setting(HEAD_DEFAULTS["weight_decay"], Rule(float, 0.0, 10.0), "head AdamW decay")
    head_hidden: int = _setting(HEAD_DEFAULTS["hidden"], Rule(int, 8, 4096), "head MLP width")
    head_dropout: float = _setting(HEAD_DEFAULTS["dropout"], Rule(float, 0.0, 0.9), "head dropout")
    head_batch_size: int = _setting(HEAD_DEFAULTS["batch_size"], Rule(int, 1, 4096), "pairs per head step")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value, rule = getattr(self, field.name), field.metadata["rule"]
            if not rule.accepts(value):
                raise RewardTrainConfigError(field.name, f"must be {rule.describe()} (got {value!r})")
            if rule.kind is float and isinstance(value, int):
                object.__setattr__(self, field.name, float(value))
        if self.search_folds == 1:
            raise RewardTrainConfigError("search_folds", "must be 0 (choose on validation) or at least 2 folds")
        if (self.max_steps is None) == (self.epochs is None):
            raise RewardTrainConfigError("max_steps", "set exactly one of max_steps and epochs (the other null)")

    @classmethod
    def pickscore(cls, backbone: str, **overrides: Any) -> RewardTrainConfig:
        """PickScore's published settings for CLIP-H (Kirstain et al. 2023): lr 3e-6, wd 0.3, 500 warm-up,
        4,000 steps, batch 128 (in total: divide by the number of GPUs), bf16."""
        base = {
            "backbone": backbone,
            "head": "none",
            "lr": 3e-6,
            "weight_decay": 0.3,
            "warmup_steps": 500,
            "max_steps": 4000,
            "batch_size": 128,
            "mixed_precision": "bf16",
            "eval_every": 100,
            "device": "cuda",
        }
        return cls(**{**base, **overrides})

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def describe(cls, name: str) -> str:
        """A field's help line and what it accepts, for forms, ``--help`` and the run-kinds listing."""
        field = next(f for f in dataclasses.fields(cls) if f.name == name)
        return f"{field.metadata['help']}: {field.metadata['rule'].describe()} (default {json.dumps(field.default)})"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> RewardTrainConfig:
        """Build from a JSON-like mapping; unknown keys and bad values raise :class:`RewardTrainConfigError`."""
        if values is not None and not isinstance(values, Mapping):
            raise RewardTrainConfigError("config", "must be a mapping of setting names to values")
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise RewardTrainConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(cls.field_names()))})")
        if values.get("epochs") is not None and "max_steps" not in values:
            values["max_steps"] = None  # asking for epochs alone means training by epochs
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """The checks that need this machine (imports torch): the device asked for exists; fp16 needs CUDA."""
        import torch

        if self.backbone is None:
            raise RewardTrainConfigError("backbone", "required: a CLIP hub id or local folder to start from")
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise RewardTrainConfigError("device", "CUDA was asked for but no CUDA device is available")
        if self.mixed_precision == "fp16" and not (self.device == "cuda" or (self.device == "auto" and cuda)):
            raise RewardTrainConfigError("mixed_precision", "fp16 needs a CUDA device (use bf16 or no on CPU)")

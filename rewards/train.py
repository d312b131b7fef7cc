"""Reward model training (PickScore recipe) with ``accelerate``: one loop for a CPU here and several GPUs under
``accelerate launch``. No Django imports: the platform passes a :class:`core.jobs.JobContext` as ``callbacks``.

Exact resume: a checkpoint (bytes) holds the trainable weights, optimizer, scheduler, grad scaler, RNG states,
step, best-so-far weights and the zero-shot baseline; the data order is a pure function of (seed, epoch), so
k steps + checkpoint + resume in fresh objects gives the same weights as N steps straight (on CUDA with
``deterministic=True``; checked on an H100).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list, set_seed
from transformers import get_scheduler

from core.jobs import JobCancelled, JobFailed, NullJobContext
from core.rng import rng_state, set_rng_state

from .data import PreferenceDataset, PreferencePair, check_training_pairs, collate_batch
from .losses import preference_loss
from .metrics import choose_threshold, evaluate_predictions, human_ceiling, pair_probabilities, votes_by_pair
from .model import DEFAULT_BACKBONE, RewardModel

__all__ = [
    "CHECKPOINT_VERSION",
    "MemoryCallbacks",
    "RewardTrainConfig",
    "RewardTrainConfigError",
    "TrainCallbacks",
    "evaluate_reward_model",
    "predict_probabilities",
    "train_reward_model",
]

CHECKPOINT_VERSION = 1
MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("cosine", "linear", "constant")
DEVICES = ("auto", "cpu", "cuda")


class RewardTrainConfigError(ValueError):
    """A training setting is invalid; the message starts with the field's name."""


@dataclass
class RewardTrainConfig:
    """Training settings; ``validate()`` names the bad field.

    The defaults are tuned for the sandbox CLIP on CPU (``rewards.sandbox_experiment``: about 30 s of one core for
    200 steps × 64 pairs, whole model, lr 1e-3; ``trainable_layers=1`` is ~40% faster at 1-3 points less
    accuracy). For CLIP-H / PickScore checkpoints start from :meth:`pickscore`.
    """

    backbone: str = DEFAULT_BACKBONE
    processor: str | None = None  # where the tokenizer/image processor live, if not beside the weights
    trainable_layers: int | None = None  # None: both towers entirely; N: last N layers + heads (HPSv2)
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    max_steps: int | None = 200  # total optimizer steps; or leave None and set epochs
    epochs: float | None = None
    batch_size: int = 64  # pairs per step and process
    grad_clip: float | None = 1.0
    scheduler: str = "cosine"  # decay after warm-up: cosine, linear or constant
    seed: int = 0
    mixed_precision: str = "no"  # no, fp16 (CUDA only) or bf16
    eval_every: int = 25  # validation (and best-checkpoint selection) every N steps; also at 0 and the end
    checkpoint_every: int | None = None  # resume checkpoint every N steps (None: at each evaluation)
    log_every: int = 10  # loss/lr metrics, progress and the stop check every N steps
    eval_batch_size: int = 256
    device: str = "auto"  # auto, cpu or cuda
    deterministic: bool = False  # CUDA: deterministic kernels, so that resume is bit-exact there too (slower)

    @classmethod
    def pickscore(cls, backbone: str, **overrides: Any) -> RewardTrainConfig:
        """PickScore's published settings for CLIP-H (DESIGN.md §7): lr 3e-6, wd 0.3, 500 warm-up, 4,000 steps,
        batch 128 (in total: divide by the number of GPUs), bf16."""
        base = {
            "backbone": backbone,
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
    def from_dict(cls, values: Mapping[str, Any]) -> RewardTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RewardTrainConfigError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise :class:`RewardTrainConfigError` naming the first bad field."""

        def bad(name: str, why: str) -> RewardTrainConfigError:
            return RewardTrainConfigError(f"{name}: {why} (got {getattr(self, name)!r})")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not isinstance(self.backbone, str) or not self.backbone:
            raise bad("backbone", "must be a CLIP hub id or a local folder")
        if self.trainable_layers is not None and (not is_int(self.trainable_layers) or self.trainable_layers < 0):
            raise bad("trainable_layers", "must be None (train everything) or an integer ≥ 0")
        if not isinstance(self.lr, int | float) or not 0 < self.lr < 1:
            raise bad("lr", "must be a number in (0, 1)")
        if not isinstance(self.weight_decay, int | float) or self.weight_decay < 0:
            raise bad("weight_decay", "must be ≥ 0")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise bad("warmup_steps", "must be an integer ≥ 0")
        if (self.max_steps is None) == (self.epochs is None):
            raise bad("max_steps", "set exactly one of max_steps and epochs")
        if self.max_steps is not None and (not is_int(self.max_steps) or self.max_steps < 1):
            raise bad("max_steps", "must be an integer ≥ 1")
        if self.epochs is not None and (not isinstance(self.epochs, int | float) or self.epochs <= 0):
            raise bad("epochs", "must be > 0")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "must be an integer ≥ 1")
        if self.grad_clip is not None and (not isinstance(self.grad_clip, int | float) or self.grad_clip <= 0):
            raise bad("grad_clip", "must be None (no clipping) or > 0")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        if not is_int(self.seed):
            raise bad("seed", "must be an integer")
        if self.mixed_precision not in MIXED_PRECISION:
            raise bad("mixed_precision", f"must be one of {', '.join(MIXED_PRECISION)}")
        for name in ("eval_every", "log_every", "eval_batch_size"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "must be an integer ≥ 1")
        if self.checkpoint_every is not None and (not is_int(self.checkpoint_every) or self.checkpoint_every < 1):
            raise bad("checkpoint_every", "must be None or an integer ≥ 1")
        if not isinstance(self.deterministic, bool):
            raise bad("deterministic", "must be true or false")
        if self.device not in DEVICES:
            raise bad("device", f"must be one of {', '.join(DEVICES)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise bad("device", "CUDA was asked for but no CUDA device is available")
        uses_cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        if self.mixed_precision == "fp16" and not uses_cuda:
            raise bad("mixed_precision", "fp16 needs a CUDA device (use bf16 or no on CPU)")


class TrainCallbacks(Protocol):
    """What training reports to; :class:`core.jobs.JobContext` satisfies it."""

    def report_progress(self, fraction: float, message: str = "") -> None: ...

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None: ...

    def should_stop(self) -> bool: ...

    def save_checkpoint(self, payload: bytes) -> None: ...

    def load_checkpoint(self) -> bytes | None: ...


class MemoryCallbacks:
    """In-memory callbacks for scripts and tests: keeps metrics and the latest checkpoint; can ask to stop."""

    def __init__(self, checkpoint: bytes | None = None, stop_after_step: int | None = None) -> None:
        self.checkpoint = checkpoint
        self.stop_after_step = stop_after_step
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.progress: list[tuple[float, str]] = []
        self.step = 0

    def report_progress(self, fraction: float, message: str = "") -> None:
        self.progress.append((fraction, message))

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self.step = max(self.step, step)
        self.metrics.append((step, dict(values)))

    def should_stop(self) -> bool:
        return self.stop_after_step is not None and self.step >= self.stop_after_step

    def save_checkpoint(self, payload: bytes) -> None:
        self.checkpoint = payload

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint


# -- evaluation ------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_probabilities(
    model: RewardModel, dataset: PreferenceDataset, batch_size: int = 256, autocast: Callable[[], Any] | None = None
) -> np.ndarray:
    """P(a wins) for every pair of ``dataset``: each unique prompt and image is encoded once."""
    was_training = model.training
    model.eval()
    device = model.device
    try:
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            text = torch.cat(
                [
                    model.encode_text(
                        dataset.input_ids[i : i + batch_size].to(device),
                        dataset.attention_mask[i : i + batch_size].to(device),
                    ).float()
                    for i in range(0, len(dataset.prompts), batch_size)
                ]
            )
            images = torch.cat(
                [
                    model.encode_images(dataset.pixels[i : i + batch_size].to(device, model.clip.dtype)).float()
                    for i in range(0, len(dataset.pixels), batch_size)
                ]
            )
            scale = model.scale().float()
        prompt = text[dataset.prompt_of.to(device)]
        scores_a = scale * (prompt * images[dataset.image_a.to(device)]).sum(-1)
        scores_b = scale * (prompt * images[dataset.image_b.to(device)]).sum(-1)
        return pair_probabilities(scores_a.cpu().numpy(), scores_b.cpu().numpy())
    finally:
        model.train(was_training)


def evaluate_reward_model(
    model: RewardModel,
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair] = (),
    *,
    threshold: float | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Metrics on ``val`` (the tie threshold chosen there unless given) and on ``test`` at that threshold."""
    p_val = predict_probabilities(model, PreferenceDataset(val, model), batch_size)
    label_val = [p.label_a for p in val]
    if threshold is None:
        threshold, _ = choose_threshold(p_val, label_val)
    out: dict[str, Any] = {"threshold": threshold, "val": evaluate_predictions(p_val, label_val, threshold)}
    if test:
        p_test = predict_probabilities(model, PreferenceDataset(test, model), batch_size)
        out["test"] = evaluate_predictions(p_test, [p.label_a for p in test], threshold)
    return _clean(out)


# -- training --------------------------------------------------------------------------------------------------


class _EpochSampler(torch.utils.data.Sampler[int]):
    """A random permutation that is a pure function of (seed, epoch): resumable without saving sampler state."""

    def __init__(self, length: int, seed: int) -> None:
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


def _fingerprint(*splits: Sequence[PreferencePair]) -> str:
    digest = hashlib.sha256()
    for split in splits:
        digest.update(f"|{len(split)}|".encode())
        for pair in split:
            digest.update(f"{pair.prompt}\x00{pair.label_a}\x00{pair.label_b}\x01".encode())
    return digest.hexdigest()


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python, recursively."""
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


def _param_groups(model: RewardModel, weight_decay: float) -> list[dict[str, Any]]:
    """No decay on biases, norms, embeddings and the logit scale (decay would pull τ to 0)."""
    decay, no_decay = [], []
    for name, param in model.trainable_named_parameters():
        skip = param.ndim < 2 or "embedding" in name or "norm" in name or name.endswith("logit_scale")
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _accelerator(config: RewardTrainConfig) -> Accelerator:
    # A long-lived worker trains many models: let each run choose its own mixed precision.
    AcceleratorState._reset_state()
    use_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    return Accelerator(cpu=use_cpu, mixed_precision=config.mixed_precision)


def train_reward_model(
    config: RewardTrainConfig,
    train: Sequence[PreferencePair],
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair] = (),
    callbacks: TrainCallbacks | None = None,
    *,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """Train, keep the best weights by validation accuracy, evaluate them and the zero-shot backbone on test.

    ``callbacks`` (a ``JobContext`` or :class:`MemoryCallbacks`) receive metrics, progress and checkpoints; when
    ``should_stop()`` turns true the state is checkpointed and :class:`core.jobs.JobCancelled` raised. A
    checkpoint found by ``load_checkpoint()`` is resumed exactly. With ``output_dir`` the best model is saved
    there (:meth:`RewardModel.save`). Returns a JSON-safe summary dict.

    Resume is bit-exact on CPU; on CUDA only with ``deterministic=True`` (otherwise atomics in some backward
    kernels leave differences of order 1e-5, as between two straight runs).
    """
    config.validate()
    if not config.deterministic:
        return _train(config, train, val, test, callbacks, output_dir)
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        return _train(config, train, val, test, callbacks, output_dir)
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def _train(
    config: RewardTrainConfig,
    train: Sequence[PreferencePair],
    val: Sequence[PreferencePair],
    test: Sequence[PreferencePair],
    callbacks: TrainCallbacks | None,
    output_dir: str | None,
) -> dict[str, Any]:
    began = time.perf_counter()
    check_training_pairs(train, "training")
    check_training_pairs(val, "validation")
    callbacks = callbacks or NullJobContext()
    accelerator = _accelerator(config)
    main = accelerator.is_main_process
    set_seed(config.seed)

    model = RewardModel.from_pretrained(
        config.backbone, trainable_layers=config.trainable_layers, processor=config.processor
    )
    model.to(accelerator.device)
    train_set, val_set = PreferenceDataset(train, model), PreferenceDataset(val, model)
    test_set = PreferenceDataset(test, model) if test else None

    sampler = _EpochSampler(len(train_set), config.seed)
    drop_last = len(train_set) >= config.batch_size * accelerator.num_processes
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate_batch, drop_last=drop_last
    )
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    prepared_model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = len(loader)
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    scheduler_name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    scheduler = get_scheduler(
        scheduler_name, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=total_steps
    )
    autocast = accelerator.autocast
    checkpoint_every = config.checkpoint_every or config.eval_every
    fingerprint = _fingerprint(train, val)

    def validate() -> dict[str, Any]:
        p_val = predict_probabilities(model, val_set, config.eval_batch_size, autocast)
        threshold, _ = choose_threshold(p_val, val_set.label_a.numpy())
        return evaluate_predictions(p_val, val_set.label_a.numpy(), threshold)

    def test_metrics(threshold: float) -> dict[str, Any] | None:
        if test_set is None:
            return None
        p_test = predict_probabilities(model, test_set, config.eval_batch_size, autocast)
        return evaluate_predictions(p_test, test_set.label_a.numpy(), threshold)

    def better(metrics: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
        if than is None:
            return True
        return (metrics["accuracy"], -metrics["log_loss"]) > (than["accuracy"], -than["log_loss"])

    # -- start or resume ---------------------------------------------------------------------------------------
    state: dict[str, Any]
    payload = callbacks.load_checkpoint()
    if payload:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
        if state.get("version") != CHECKPOINT_VERSION:
            raise JobFailed(f"reward checkpoint version {state.get('version')} is not {CHECKPOINT_VERSION}")
        if state["fingerprint"] != fingerprint:
            raise JobFailed("the checkpoint was made on different training/validation data: cannot resume")
        if state["config"] != config.to_dict():
            raise JobFailed("the checkpoint was made with different training settings: cannot resume")
        model.load_trainable_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        state = {key: state[key] for key in ("step", "train_seconds", "baseline", "best")}
        resumed_from = state["step"]
    else:
        val_metrics = validate()
        state = {
            "step": 0,
            "train_seconds": 0.0,
            "baseline": {"val": val_metrics, "test": test_metrics(val_metrics["threshold"])},
            "best": {"step": 0, "val": val_metrics, "model": model.trainable_state_dict()},
        }
        resumed_from = 0
        if main:
            callbacks.log_metrics(0, {f"val_{k}": v for k, v in _finite(val_metrics).items()})

    def save_checkpoint() -> None:
        if not main:
            return
        buffer = io.BytesIO()
        torch.save(
            {
                **state,
                "version": CHECKPOINT_VERSION,
                "fingerprint": fingerprint,
                "config": config.to_dict(),
                "model": model.trainable_state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "rng": rng_state(),
            },
            buffer,
        )
        callbacks.save_checkpoint(buffer.getvalue())

    def stop_requested() -> bool:
        flag = [callbacks.should_stop() if main else False]
        if accelerator.num_processes > 1:
            broadcast_object_list(flag)
        return bool(flag[0])

    # -- loop --------------------------------------------------------------------------------------------------
    step = state["step"]
    params = [p for _, p in model.trainable_named_parameters()]
    prepared_model.train()
    running_loss, running_count = 0.0, 0
    while step < total_steps:
        epoch, skip = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        for index, batch in enumerate(loader):
            if index < skip:
                continue
            step_began = time.perf_counter()
            with autocast():
                scores = prepared_model(batch["input_ids"], batch["attention_mask"], batch["pixel_a"], batch["pixel_b"])
            loss = preference_loss(scores[:, 0], scores[:, 1], batch["label_a"], batch["label_b"], batch["weight"])
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(params, config.grad_clip) if config.grad_clip else None
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            state["step"] = step
            running_loss += float(loss.detach())
            running_count += 1
            state["train_seconds"] += time.perf_counter() - step_began

            if step % config.log_every == 0 or step == total_steps:
                if main:
                    values = {"loss": running_loss / running_count, "lr": scheduler.get_last_lr()[0]}
                    if grad_norm is not None:
                        values["grad_norm"] = float(grad_norm)
                    values["logit_scale"] = float(model.scale().detach())
                    callbacks.log_metrics(step, values)
                    callbacks.report_progress(step / total_steps, f"step {step} of {total_steps}")
                running_loss, running_count = 0.0, 0
            if step % config.eval_every == 0 or step == total_steps:
                val_metrics = validate()
                if better(val_metrics, state["best"]["val"]):
                    state["best"] = {"step": step, "val": val_metrics, "model": model.trainable_state_dict()}
                if main:
                    values = {f"val_{k}": v for k, v in _finite(val_metrics).items()}
                    callbacks.log_metrics(step, {**values, "best_val_accuracy": state["best"]["val"]["accuracy"]})
            if step % checkpoint_every == 0 and step < total_steps:
                save_checkpoint()
            if step < total_steps and step % config.log_every == 0 and stop_requested():
                if step % checkpoint_every:
                    save_checkpoint()
                raise JobCancelled(f"reward training stopped at step {step} of {total_steps}")
            if step >= total_steps:
                break

    # -- finish ------------------------------------------------------------------------------------------------
    model.load_trainable_state_dict(state["best"]["model"])
    best_val = state["best"]["val"]
    threshold = best_val["threshold"]
    test_result = test_metrics(threshold)
    if output_dir and main:
        model.save(output_dir)
    accelerator.wait_for_everyone()
    pairs_trained = (step - resumed_from) * config.batch_size * accelerator.num_processes
    train_seconds_here = state["train_seconds"]
    result = {
        "val_accuracy": best_val["accuracy"],
        "test_accuracy": test_result["accuracy"] if test_result else None,
        "baseline_val_accuracy": state["baseline"]["val"]["accuracy"],
        "baseline_test_accuracy": state["baseline"]["test"]["accuracy"] if state["baseline"]["test"] else None,
        "threshold": threshold,
        "best_step": state["best"]["step"],
        "val": best_val,
        "test": test_result,
        "baseline": {**state["baseline"], "threshold": state["baseline"]["val"]["threshold"]},
        "human_ceiling": human_ceiling(votes_by_pair(test)) if test else None,
        "steps": step,
        "epochs": step / steps_per_epoch,
        "resumed_from_step": resumed_from,
        "train_pairs": len(train),
        "val_pairs": len(val),
        "test_pairs": len(test),
        "seconds": time.perf_counter() - began,
        "train_seconds": train_seconds_here,
        "pairs_per_second": (step * config.batch_size * accelerator.num_processes) / train_seconds_here
        if train_seconds_here > 0
        else None,
        "pairs_trained_this_attempt": pairs_trained,
        "device": str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "model": model.describe(),
        "config": config.to_dict(),
        "model_dir": output_dir,
    }
    if main:
        callbacks.report_progress(1.0, f"done: validation accuracy {best_val['accuracy']:.3f}")
    return _clean(result)

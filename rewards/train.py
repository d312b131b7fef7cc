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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list, set_seed
from transformers import get_scheduler

from core.jobs import JobCancelled, JobFailed, NullJobContext
from core.rng import rng_state, set_rng_state

from .config import RewardTrainConfig, RewardTrainConfigError
from .data import PreferenceDataset, PreferencePair, Splits, check_training_pairs, collate_batch
from .losses import preference_loss
from .metrics import (
    accuracy_gain,
    choose_threshold,
    evaluate_predictions,
    human_ceiling,
    pair_probabilities,
    votes_by_pair,
)
from .model import RewardModel

__all__ = [
    "CHECKPOINT_VERSION",
    "MemoryCallbacks",
    "RewardTrainConfig",
    "RewardTrainConfigError",
    "RewardTrainer",
    "TrainCallbacks",
    "evaluate_reward_model",
    "predict_probabilities",
    "train_reward_model",
]

CHECKPOINT_VERSION = 1


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

    ``config.head`` other than "none" fits a head ensemble on the frozen backbone's features instead, and
    ``config.search`` tries several options and keeps the best by validation (:mod:`rewards.head_train`; both
    restart on resume: they take seconds to minutes). The rest of this docstring is about the CLIP fine-tune.

    ``callbacks`` (a ``JobContext`` or :class:`MemoryCallbacks`) receive metrics, progress and checkpoints; when
    ``should_stop()`` turns true the state is checkpointed and :class:`core.jobs.JobCancelled` raised. A
    checkpoint found by ``load_checkpoint()`` is resumed exactly. With ``output_dir`` the best model is saved
    there (:meth:`RewardModel.save`). Returns a JSON-safe summary dict.

    Resume is bit-exact on CPU; on CUDA only with ``deterministic=True`` (otherwise atomics in some backward
    kernels leave differences of order 1e-5, as between two straight runs).
    """
    config.validate()
    if config.search or config.head != "none":
        from .head_train import search_reward_models, train_head_reward_model

        fit = search_reward_models if config.search else train_head_reward_model
        with _deterministic_kernels(config.deterministic):
            return fit(config, train, val, test, callbacks, output_dir=output_dir)
    with _deterministic_kernels(config.deterministic):
        return RewardTrainer(config, Splits(train, val, test), callbacks, output_dir).train()


@contextmanager
def _deterministic_kernels(enabled: bool) -> Iterator[None]:
    """With ``enabled``: deterministic CUDA kernels (no cuDNN autotuning) for the block, then as before."""
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


@dataclass
class Baseline:
    """The zero-shot backbone's metrics, measured once before the first step (the tie threshold chosen on val), and
    its test probabilities (for the trained model's gain over it; None in a checkpoint older than them)."""

    val: dict[str, Any]
    test: dict[str, Any] | None
    test_p_a: list[float] | None = None


@dataclass
class BestWeights:
    """The best trainable weights so far by validation accuracy (then log loss), and the step they are from."""

    step: int
    val: dict[str, Any]
    weights: dict[str, torch.Tensor]

    def beaten_by(self, val: Mapping[str, Any]) -> bool:
        return (val["accuracy"], -val["log_loss"]) > (self.val["accuracy"], -self.val["log_loss"])


class _RunningLoss:
    """The mean training loss since the last log line."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, loss: float) -> None:
        self.total, self.count = self.total + loss, self.count + 1

    def pop_mean(self) -> float:
        mean = self.total / self.count
        self.total, self.count = 0.0, 0
        return mean


class RewardTrainer:
    """One attempt of a reward-model training run (see :func:`train_reward_model`, which is how to call it).

    Everything a checkpoint carries lives in attributes: the torch objects' states plus ``step``,
    ``train_seconds_total`` (training time over all attempts), ``baseline`` and ``best``.
    """

    def __init__(
        self,
        config: RewardTrainConfig,
        pairs: Splits,
        callbacks: TrainCallbacks | None = None,
        output_dir: str | None = None,
    ) -> None:
        self.began = time.perf_counter()
        check_training_pairs(pairs.train, "training")
        check_training_pairs(pairs.val, "validation")
        self.config, self.output_dir = config, output_dir
        self.train_pairs, self.val_pairs, self.test_pairs = pairs
        self.callbacks = callbacks or NullJobContext()
        self.accelerator = _accelerator(config)
        self.is_main = self.accelerator.is_main_process
        set_seed(config.seed)
        self._build_model()
        self._build_optimisation()
        self.fingerprint = _fingerprint(pairs.train, pairs.val)
        self.step = 0
        self.resumed_from_step = 0
        self.train_seconds_total = 0.0
        self.running_loss = _RunningLoss()
        self.baseline: Baseline | None = None
        self.best: BestWeights | None = None

    # ------------------------------------------------------------------------------------------------ set-up
    def _build_model(self) -> None:
        config = self.config
        self.model = RewardModel.from_pretrained(
            config.backbone, trainable_layers=config.trainable_layers, processor=config.processor
        )
        self.model.to(self.accelerator.device)
        self.train_set = PreferenceDataset(self.train_pairs, self.model)
        self.val_set = PreferenceDataset(self.val_pairs, self.model)
        self.test_set = PreferenceDataset(self.test_pairs, self.model) if self.test_pairs else None

    def _build_optimisation(self) -> None:
        config, accelerator = self.config, self.accelerator
        self.sampler = _EpochSampler(len(self.train_set), config.seed)
        drop_last = len(self.train_set) >= config.batch_size * accelerator.num_processes
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=config.batch_size,
            sampler=self.sampler,
            collate_fn=collate_batch,
            drop_last=drop_last,
        )
        optimizer = torch.optim.AdamW(_param_groups(self.model, config.weight_decay), lr=config.lr)
        self.prepared_model, self.optimizer, self.loader = accelerator.prepare(self.model, optimizer, loader)
        self.steps_per_epoch = len(self.loader)
        self.total_steps = config.max_steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))
        self.scheduler = get_scheduler(
            "constant_with_warmup" if config.scheduler == "constant" else config.scheduler,
            self.optimizer,
            num_warmup_steps=config.warmup_steps,
            num_training_steps=self.total_steps,
        )
        self.checkpoint_every = config.checkpoint_every or config.eval_every
        self.trainable_params = [p for _, p in self.model.trainable_named_parameters()]

    # -------------------------------------------------------------------------------------------------- the run
    def train(self) -> dict[str, Any]:
        """Resume from the callbacks' checkpoint (or measure the zero-shot baseline), train, finish."""
        payload = self.callbacks.load_checkpoint()
        if payload:
            self._resume(payload)
        else:
            self._start()
        self.prepared_model.train()
        while self.step < self.total_steps:
            self._run_epoch()
        return self._finish()

    def _start(self) -> None:
        val = self._validate()
        p_test = self._test_predictions()
        self.baseline = Baseline(
            val=val,
            test=self._test_metrics(p_test, val["threshold"]),
            test_p_a=None if p_test is None else p_test.tolist(),
        )
        self.best = BestWeights(step=0, val=val, weights=self.model.trainable_state_dict())
        if self.is_main:
            self.callbacks.log_metrics(0, {f"val_{k}": v for k, v in _finite(val).items()})

    def _resume(self, payload: bytes) -> None:
        saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
        if saved.get("version") != CHECKPOINT_VERSION:
            raise JobFailed(f"reward checkpoint version {saved.get('version')} is not {CHECKPOINT_VERSION}")
        if saved["fingerprint"] != self.fingerprint:
            raise JobFailed("the checkpoint was made on different training/validation data: cannot resume")
        if saved["config"] != self.config.to_dict():
            raise JobFailed("the checkpoint was made with different training settings: cannot resume")
        self.model.load_trainable_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler") is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        self.step = self.resumed_from_step = saved["step"]
        self.train_seconds_total = saved["train_seconds"]
        self.baseline = Baseline(**saved["baseline"])
        best = saved["best"]
        self.best = BestWeights(step=best["step"], val=best["val"], weights=best["model"])

    def _run_epoch(self) -> None:
        """The rest of the current epoch (all of it unless a resume lands mid-epoch), or up to the last step."""
        epoch, done_in_epoch = divmod(self.step, self.steps_per_epoch)
        self.sampler.set_epoch(epoch)
        for index, batch in enumerate(self.loader):
            if index < done_in_epoch:
                continue
            grad_norm = self._train_step(batch)
            self._after_step(grad_norm)
            if self.step >= self.total_steps:
                return

    def _train_step(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """One optimizer step; returns the gradient norm before clipping (None without clipping)."""
        config, accelerator = self.config, self.accelerator
        step_began = time.perf_counter()
        with accelerator.autocast():
            scores = self.prepared_model(
                batch["input_ids"], batch["attention_mask"], batch["pixel_a"], batch["pixel_b"]
            )
        loss = preference_loss(scores[:, 0], scores[:, 1], batch["label_a"], batch["label_b"], batch["weight"])
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(self.trainable_params, config.grad_clip) if config.grad_clip else None
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.running_loss.add(float(loss.detach()))
        self.train_seconds_total += time.perf_counter() - step_began
        return grad_norm

    def _after_step(self, grad_norm: torch.Tensor | None) -> None:
        """Log, validate, checkpoint and honour a stop request when their step comes."""
        config, step = self.config, self.step
        last = step == self.total_steps
        if step % config.log_every == 0 or last:
            self._log_training(grad_norm)
        if step % config.eval_every == 0 or last:
            self._evaluate()
        if step % self.checkpoint_every == 0 and not last:
            self._save_checkpoint()
        if not last and step % config.log_every == 0 and self._stop_requested():
            if step % self.checkpoint_every:
                self._save_checkpoint()
            raise JobCancelled(f"reward training stopped at step {step} of {self.total_steps}")

    # ----------------------------------------------------------------------------------- metrics and evaluation
    def _log_training(self, grad_norm: torch.Tensor | None) -> None:
        mean_loss = self.running_loss.pop_mean()
        if not self.is_main:
            return
        values = {"loss": mean_loss, "lr": self.scheduler.get_last_lr()[0]}
        if grad_norm is not None:
            values["grad_norm"] = float(grad_norm)
        values["logit_scale"] = float(self.model.scale().detach())
        self.callbacks.log_metrics(self.step, values)
        self.callbacks.report_progress(self.step / self.total_steps, f"step {self.step} of {self.total_steps}")

    def _evaluate(self) -> None:
        """Validate; keep the weights if they are the best so far."""
        val = self._validate()
        if self.best.beaten_by(val):
            self.best = BestWeights(step=self.step, val=val, weights=self.model.trainable_state_dict())
        if self.is_main:
            values = {f"val_{k}": v for k, v in _finite(val).items()}
            self.callbacks.log_metrics(self.step, {**values, "best_val_accuracy": self.best.val["accuracy"]})

    def _validate(self) -> dict[str, Any]:
        """Validation metrics at the tie threshold chosen on validation itself."""
        labels = self.val_set.label_a.numpy()
        p_val = predict_probabilities(self.model, self.val_set, self.config.eval_batch_size, self.accelerator.autocast)
        threshold, _ = choose_threshold(p_val, labels)
        return evaluate_predictions(p_val, labels, threshold)

    def _test_predictions(self) -> np.ndarray | None:
        if self.test_set is None:
            return None
        autocast = self.accelerator.autocast
        return predict_probabilities(self.model, self.test_set, self.config.eval_batch_size, autocast)

    def _test_metrics(self, p_test: np.ndarray | None, threshold: float) -> dict[str, Any] | None:
        return None if p_test is None else evaluate_predictions(p_test, self.test_set.label_a.numpy(), threshold)

    def _test_gain(self, p_test: np.ndarray | None) -> dict[str, Any] | None:
        """The best weights' tie-aware test accuracy above zero-shot's, with its interval over test prompts."""
        if p_test is None or self.baseline.test_p_a is None:
            return None
        return accuracy_gain(
            p_test,
            self.best.val["threshold"],
            self.baseline.test_p_a,
            self.baseline.val["threshold"],
            self.test_set.label_a.numpy(),
            [pair.prompt for pair in self.test_pairs],
        )

    # ------------------------------------------------------------------------------------ checkpoint and stop
    def _save_checkpoint(self) -> None:
        if not self.is_main:
            return
        scaler = self.accelerator.scaler
        buffer = io.BytesIO()
        state = {
            "step": self.step,
            "train_seconds": self.train_seconds_total,
            "baseline": asdict(self.baseline),
            "best": {"step": self.best.step, "val": self.best.val, "model": self.best.weights},
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "config": self.config.to_dict(),
            "model": self.model.trainable_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }
        torch.save(state, buffer)
        self.callbacks.save_checkpoint(buffer.getvalue())

    def _stop_requested(self) -> bool:
        """The main process asks the callbacks; every process gets its answer."""
        flag = [self.callbacks.should_stop() if self.is_main else False]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(flag)
        return bool(flag[0])

    # -------------------------------------------------------------------------------------------------- finish
    def _finish(self) -> dict[str, Any]:
        """Restore the best weights, test them, save them to ``output_dir``; the JSON-safe summary."""
        self.model.load_trainable_state_dict(self.best.weights)
        p_test = self._test_predictions()
        test = self._test_metrics(p_test, self.best.val["threshold"])
        if self.output_dir and self.is_main:
            self.model.save(self.output_dir)
        self.accelerator.wait_for_everyone()
        result = self._summary(test, self._test_gain(p_test))
        if self.is_main:
            self.callbacks.report_progress(1.0, f"done: validation accuracy {self.best.val['accuracy']:.3f}")
        return _clean(result)

    def _summary(self, test: dict[str, Any] | None, test_gain: dict[str, Any] | None) -> dict[str, Any]:
        processes, batch_size = self.accelerator.num_processes, self.config.batch_size
        baseline, best = self.baseline, self.best
        seconds = self.train_seconds_total
        return {
            "val_accuracy": best.val["accuracy"],
            "test_accuracy": test["accuracy"] if test else None,
            "baseline_val_accuracy": baseline.val["accuracy"],
            "baseline_test_accuracy": baseline.test["accuracy"] if baseline.test else None,
            "test_gain": test_gain,
            "threshold": best.val["threshold"],
            "best_step": best.step,
            "val": best.val,
            "test": test,
            "baseline": {"val": baseline.val, "test": baseline.test, "threshold": baseline.val["threshold"]},
            "human_ceiling": human_ceiling(votes_by_pair(self.test_pairs)) if self.test_pairs else None,
            "steps": self.step,
            "epochs": self.step / self.steps_per_epoch,
            "resumed_from_step": self.resumed_from_step,
            "train_pairs": len(self.train_pairs),
            "val_pairs": len(self.val_pairs),
            "test_pairs": len(self.test_pairs),
            "seconds": time.perf_counter() - self.began,
            "train_seconds": seconds,
            "pairs_per_second": self.step * batch_size * processes / seconds if seconds > 0 else None,
            "pairs_trained_this_attempt": (self.step - self.resumed_from_step) * batch_size * processes,
            "device": str(self.accelerator.device),
            "num_processes": processes,
            "model": self.model.describe(),
            "config": self.config.to_dict(),
            "model_dir": self.output_dir,
        }

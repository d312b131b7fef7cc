"""The DDPO / Flow-GRPO trainer: epochs of sample → reward → advantage → train, with evaluation and exact resume.

No Django imports: the platform talks to it through :class:`core.jobs.JobContext`. One call does everything::

    result = DDPOTrainer(pipeline, config, reward_fn, train_prompts, eval_prompts, ctx, output_dir).train()

The pipeline's family picks the algorithm (``config.algorithm``, "auto"): DDPO on a Stable Diffusion UNet with
DDIM, or Flow-GRPO (Liu et al., 2025) on a flow-matching transformer (SD3/SD3.5, FLUX.1) with the flow SDE of
:mod:`finetune.flow_logprob`; both share everything below, only the parts differ
(:class:`finetune.sampling.Components`, :class:`finetune.flow_sampling.FlowComponents`,
:class:`finetune.flux_sampling.FluxComponents`).

Each epoch draws ``samples_per_epoch`` (prompt, seed) pairs from ``(seed, epoch)`` alone, samples them with
η = 1 DDIM or the flow SDE (split across processes), scores them while the next batch samples, turns rewards into
per-prompt advantages and runs ``inner_epochs`` passes of PPO over them. Every epoch ends with a checkpoint (adapter,
optimizer, advantage tracker, RNG states, epoch, history) through ``ctx.save_checkpoint``; a new trainer whose
``ctx.load_checkpoint()`` returns it carries on exactly where it stopped. Every ``eval_every`` epochs (and
before the first and after the last) the eval prompts are sampled deterministically (η = 0 or the flow ODE,
fixed seeds) and scored by the reward and, when given, a gold reward, so that reward hacking shows as a gap
between the two.
Runs under ``accelerate`` (see ``finetune/README.md``): only the main process evaluates and writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jobs import JobCancelled, JobContext, JobFailed, NullJobContext
from core.rng import rng_state, set_rng_state

from . import checkpoint as ckpt
from .advantages import PerPromptStatTracker
from .config import ConfigError, DDPOConfig
from .ddpo import StepSettings, train_step, trained_steps
from .ema import ParameterEMA
from .flow_sampling import FlowComponents, is_flow_pipeline
from .flux_sampling import FluxComponents, is_flux_pipeline
from .lora import add_lora, load_lora_state_dict, lora_state_dict, save_lora
from .processes import load_shared_checkpoint, mean_over_processes, stop_requested
from .reward import RewardFn, RewardPool, call_reward
from .sampling import Components, Trajectories, grid_png, sample_deterministic, to_pil

# Fields that may change between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = {"epochs", "eval_every", "reward_workers", "grid_prompts"}


@dataclass
class DDPOResult:
    """What a finished run produced (``adapter_dir`` and ``grid_png`` only on the main process)."""

    adapter_dir: Path | None
    grid_png: bytes | None
    summary: dict[str, Any]


NullContext = NullJobContext  # kept: the name scripts and tests use


ALGORITHM_OF_FAMILY = {"ddim": "ddpo", "flow": "flow_grpo"}


def load_base_pipeline(source: str | Path, dtype: torch.dtype = torch.float32):
    """Load a diffusers pipeline (its class from the folder's ``model_index.json``: Stable Diffusion, SD3...) from
    a local folder or hub id, with the progress bar off."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(str(source), dtype=dtype)
    except Exception as exc:
        raise JobFailed(f"Could not load the base pipeline {str(source)!r}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_accelerator(config: DDPOConfig, cpu: bool | None = None):
    """An ``accelerate.Accelerator`` with the config's mixed precision (full precision on the CPU)."""
    from accelerate import Accelerator

    use_cpu = (not torch.cuda.is_available()) if cpu is None else cpu
    precision = config.resolved_mixed_precision("cpu" if use_cpu else "cuda")
    if use_cpu and precision == "fp16":
        raise ConfigError("mixed_precision", "fp16 needs a CUDA device; use 'no' or 'bf16' on the CPU")
    return Accelerator(cpu=use_cpu, mixed_precision=precision)


def algorithm_for(pipeline: Any, wanted: str = "auto") -> str:
    """The RL algorithm ``pipeline`` trains with: ``flow_grpo`` for a flow-matching transformer, ``ddpo`` for a
    DDIM-family UNet; a ``wanted`` algorithm other than that (or "auto") is a :class:`ConfigError`."""
    flow = is_flow_pipeline(pipeline)
    if wanted != "auto" and wanted != ("flow_grpo" if flow else "ddpo"):
        kind = "a flow-matching transformer (use flow_grpo)" if flow else "a DDIM-family UNet (use ddpo)"
        raise ConfigError("algorithm", f"{wanted} does not fit {type(pipeline).__name__}: it is {kind}")
    return "flow_grpo" if flow else "ddpo"


def components_for(pipeline: Any, config: DDPOConfig, device: torch.device, autocast: torch.dtype | None):
    """The parts of ``pipeline`` its family trains with: a flow transformer (Flow-GRPO: SD3 or FLUX) or a DDIM UNet
    (DDPO); a ``config.algorithm`` that does not fit the pipeline, or a flow pipeline of another class, is a
    :class:`ConfigError`."""
    if algorithm_for(pipeline, config.algorithm) == "flow_grpo":
        if type(pipeline).__name__ == "StableDiffusion3Pipeline":
            return FlowComponents.from_pipeline(pipeline, device, autocast)
        if is_flux_pipeline(pipeline):
            return FluxComponents.from_pipeline(pipeline, device, autocast)
        raise ConfigError(
            "algorithm",
            "Flow-GRPO here drives StableDiffusion3Pipeline (SD3, SD3.5) and FluxPipeline (FLUX.1); "
            f"{type(pipeline).__name__} is a flow-matching model it does not drive",
        )
    if getattr(pipeline, "unet", None) is None:
        raise ConfigError("algorithm", f"{type(pipeline).__name__} has neither a UNet nor a flow transformer")
    return Components.from_pipeline(pipeline, device, autocast)


class DDPOTrainer:
    """DDPO (Stable Diffusion UNets) or Flow-GRPO (SD3 and FLUX transformers) with LoRA (see the module docstring)."""

    def __init__(
        self,
        pipeline: Any,
        config: DDPOConfig | Mapping[str, Any] | None,
        reward_fn: RewardFn,
        train_prompts: Sequence[str],
        eval_prompts: Sequence[str],
        ctx: JobContext | None = None,
        output_dir: str | Path | None = None,
        gold_reward_fn: RewardFn | None = None,
        parent_lora: str | Path | None = None,
        accelerator: Any = None,
    ):
        self.config = config if isinstance(config, DDPOConfig) else DDPOConfig.from_dict(config)
        cfg = self.config
        if not train_prompts:
            raise ConfigError("train_prompts", "at least one training prompt is needed")
        if not eval_prompts:
            raise ConfigError("eval_prompts", "at least one evaluation prompt is needed")
        self.accelerator = accelerator or make_accelerator(cfg)
        acc = self.accelerator
        if cfg.samples_per_epoch % (acc.num_processes * cfg.train_batch_size):
            raise ConfigError(
                "samples_per_epoch",
                f"must be a multiple of train_batch_size × processes ({cfg.train_batch_size} × {acc.num_processes})",
            )
        self.is_main = acc.is_main_process
        self.ctx = ctx if (ctx is not None and self.is_main) else NullContext()
        self.output_dir = Path(output_dir) if output_dir else None
        self.reward_fn, self.gold_reward_fn = reward_fn, gold_reward_fn
        self.train_prompts, self.eval_prompts = list(train_prompts), list(eval_prompts)

        precision = acc.mixed_precision
        autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        if isinstance(pipeline, str | Path):
            on_cuda = acc.device.type == "cuda"
            pipeline = load_base_pipeline(pipeline, autocast if (autocast and on_cuda) else torch.float32)
        self.parts = components_for(pipeline, cfg, acc.device, autocast if acc.device.type == "cuda" else None)
        params = add_lora(
            self.parts.denoiser,
            rank=cfg.lora_rank,
            alpha=cfg.lora_alpha or None,
            targets=cfg.lora_targets,
            parent_dir=parent_lora,
            init_seed=cfg.seed,
        )
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
            eps=cfg.adam_epsilon,
        )
        self.algorithm = ALGORITHM_OF_FAMILY[self.parts.family]
        self.noise = cfg.noise_level if self.parts.family == "flow" else cfg.eta
        self.model, self.optimizer = acc.prepare(self.parts.denoiser, optimizer)
        self.ema = ParameterEMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.negative_embeds = self.parts.negative()
        self.tracker = PerPromptStatTracker(
            cfg.stat_buffer_size, cfg.stat_min_count, cfg.adv_clip_max, mode=cfg.advantage_stats
        )
        self.settings = StepSettings(
            guidance_scale=cfg.guidance_scale,
            noise=self.noise,
            clip_range=cfg.clip_range,
            adv_clip_max=cfg.adv_clip_max,
            kl_beta=cfg.kl_beta,
            max_grad_norm=cfg.max_grad_norm,
            timesteps_per_forward=cfg.timesteps_per_forward,
        )
        self.size = (cfg.height or self.parts.default_size()[0], cfg.width or self.parts.default_size()[1])
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.grid_before: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------- the run
    def train(self) -> DDPOResult:
        """Run (or resume) to ``config.epochs``; returns the adapter folder, the before/after grid and a summary."""
        cfg, started = self.config, time.perf_counter()
        with RewardPool(self.reward_fn, cfg.reward_workers) as pool:
            if not self._resume():
                self._evaluate(0)
                self._save_checkpoint()
            while self.epoch < cfg.epochs:
                self._stop_if_asked()
                metrics = self._run_epoch(pool)
                self.epoch += 1
                if cfg.eval_every and self.epoch % cfg.eval_every == 0 and self.epoch < cfg.epochs:
                    metrics.update(self._evaluate(self.epoch))
                self.history.append(metrics)
                self.ctx.log_metrics(self.epoch, metrics)
                self._save_checkpoint()
                self.ctx.report_progress(self.epoch / (cfg.epochs + 1), f"epoch {self.epoch}/{cfg.epochs}")
        if not self.evals or self.evals[-1]["epoch"] != self.epoch:
            final = self._evaluate(self.epoch)
            if self.history:
                self.history[-1].update(final)
        result = self._finish(time.perf_counter() - started)
        self.ctx.report_progress(1.0, "done")
        return result

    def _stop_if_asked(self) -> None:
        """Cooperative cancel: all processes agree (the main one asks the context)."""
        if stop_requested(self.ctx, self.accelerator):
            raise JobCancelled(f"Cancelled after epoch {self.epoch} of {self.config.epochs}; the checkpoint is saved.")

    # ---------------------------------------------------------------------------------------- one epoch
    def _epoch_plan(self, epoch: int) -> tuple[list[str], list[int]]:
        """The epoch's (prompt, seed) pairs: a function of (seed, epoch) only, the same on every process."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        count, prompts = cfg.samples_per_epoch // cfg.images_per_prompt, self.train_prompts
        order = np.concatenate([rng.permutation(len(prompts)) for _ in range(-(-count // len(prompts)))])[:count]
        order = np.repeat(order, cfg.images_per_prompt)
        seeds = rng.integers(0, 2**31 - 1, size=len(order))
        return [prompts[i] for i in order], [int(s) for s in seeds]

    def _run_epoch(self, pool: RewardPool) -> dict[str, float]:
        cfg, acc = self.config, self.accelerator
        began = time.perf_counter()
        prompts, seeds = self._epoch_plan(self.epoch)
        share = cfg.samples_per_epoch // acc.num_processes
        mine = slice(acc.process_index * share, (acc.process_index + 1) * share)
        local_prompts, local_seeds = prompts[mine], seeds[mine]

        parts, futures, reward_wait = [], [], 0.0
        self.model.eval()
        for start in range(0, share, cfg.sample_batch_size):
            chunk = slice(start, start + cfg.sample_batch_size)
            images, trajectories = self.parts.sample(
                local_prompts[chunk],
                local_seeds[chunk],
                cfg.steps,
                cfg.guidance_scale,
                self.noise,
                self.size,
                self.negative_embeds,
            )
            parts.append(trajectories)
            futures.append(pool.submit(local_prompts[chunk], to_pil(images)))
        sampled = time.perf_counter()
        rewards = np.concatenate([f.result() for f in futures])
        reward_wait = time.perf_counter() - sampled
        batch = Trajectories.cat(parts)

        all_rewards = self._gather(rewards)
        advantages = self.tracker.update(prompts, all_rewards)
        local_adv = torch.as_tensor(advantages[mine], dtype=torch.float32, device=acc.device)

        self.model.train()
        stats = self._train_on(batch, local_adv)
        if self.ema is not None:
            self.ema.update()
        trained = time.perf_counter()
        metrics = {
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std()),
            "reward_min": float(all_rewards.min()),
            "reward_max": float(all_rewards.max()),
            "advantage_mean": float(advantages.mean()),
            "advantage_std": float(advantages.std()),
            "advantage_abs_max": float(np.abs(advantages).max()),
            "learning_rate": float(self.optimizer.param_groups[0]["lr"]),
            "seconds_sampling": sampled - began,
            "seconds_reward_wait": reward_wait,
            "seconds_training": trained - sampled - reward_wait,
            "seconds_epoch": trained - began,
            **self.tracker.stats(),
            **stats,
        }
        return metrics

    def _train_on(self, batch: Trajectories, advantages: torch.Tensor) -> dict[str, float]:
        """``inner_epochs`` shuffled passes over the local samples, one optimizer step per train batch."""
        cfg, acc = self.config, self.accelerator
        count, steps = batch.log_probs.shape
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch * 1009 + acc.process_index)
        history: list[dict[str, float]] = []
        for _ in range(cfg.inner_epochs):
            order = torch.randperm(count, generator=generator)
            for start in range(0, count, cfg.train_batch_size):
                rows = order[start : start + cfg.train_batch_size].to(acc.device)
                step_indices = trained_steps(len(rows), steps, cfg.timestep_window, cfg.timestep_fraction, generator)
                history.append(
                    train_step(
                        self.model,
                        self.parts,
                        batch.index(rows),
                        advantages[rows],
                        step_indices.to(acc.device),
                        self.negative_embeds,
                        self.settings,
                        self.optimizer,
                        acc,
                        measure_kl=not history,  # with kl_beta = 0, KL to base is measured on the first batch only
                    )
                )
        averaged = {key: float(np.mean([h[key] for h in history if key in h])) for key in history[0]}
        averaged["ratio_max_deviation"] = max(h["ratio_max_deviation"] for h in history)
        averaged["first_ratio_max_deviation"] = history[0]["ratio_max_deviation"]
        averaged["optimizer_steps"] = float(len(history))
        return mean_over_processes(self.accelerator, averaged)

    # ------------------------------------------------------------------------------------- evaluation
    def _evaluate(self, epoch: int) -> dict[str, float]:
        """Deterministic (η = 0, fixed seeds) samples of the eval prompts, scored (main process only)."""
        if not self.is_main:
            return {}
        cfg = self.config
        prompts = [p for p in self.eval_prompts for _ in range(cfg.eval_images_per_prompt)]
        seeds = [cfg.eval_seed + k for _ in self.eval_prompts for k in range(cfg.eval_images_per_prompt)]
        began = time.perf_counter()
        with self._evaluated_weights():
            pixels = self._sample_deterministic(prompts, seeds)
        images = to_pil(pixels)
        result = {"epoch": epoch, "eval_reward_mean": float(call_reward(self.reward_fn, prompts, images).mean())}
        if self.gold_reward_fn is not None:
            gold = call_reward(self.gold_reward_fn, prompts, images, what="gold reward")
            result["eval_gold_reward_mean"] = float(gold.mean())
        result["seconds_eval"] = time.perf_counter() - began
        if epoch == 0 and self.grid_before is None:
            self.grid_before = self._grid_row(pixels)
        self.evals.append(result)
        self.ctx.log_metrics(epoch, {k: v for k, v in result.items() if k != "epoch"})
        return {k: v for k, v in result.items() if k != "epoch"}

    def _evaluated_weights(self):
        """The weights evaluations and the result use: the average over epochs with ``ema_decay``, else the live
        ones."""
        return self.ema.applied() if self.ema is not None else contextlib.nullcontext()

    def _sample_deterministic(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        cfg = self.config
        return sample_deterministic(
            self.parts,
            prompts,
            seeds,
            cfg.steps,
            cfg.guidance_scale,
            cfg.sample_batch_size,
            self.size,
            self.negative_embeds,
        )

    def _grid_row(self, pixels: np.ndarray) -> np.ndarray:
        """The first image of each of the first ``grid_prompts`` eval prompts."""
        per = self.config.eval_images_per_prompt
        return pixels[::per][: self.config.grid_prompts].copy()

    # ------------------------------------------------------------------------------ checkpoint / resume
    def state_bytes(self) -> bytes:
        return ckpt.dumps(
            {
                "config": self.config.to_dict(),
                "epoch": self.epoch,
                "adapter": lora_state_dict(self.parts.denoiser),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "tracker": self.tracker.state_dict(),
                "rng": rng_state(),
                "history": self.history,
                "evals": self.evals,
                "grid_before": self.grid_before,
            }
        )

    def _save_checkpoint(self) -> None:
        if self.is_main:
            self.ctx.save_checkpoint(self.state_bytes())

    def _resume(self) -> bool:
        """Load the context's checkpoint (read by the main process, shared with the others); False if none."""
        state = load_shared_checkpoint(
            self.ctx, self.accelerator, ckpt.FORMAT, self.config.to_dict(), RESUMABLE_CHANGES
        )
        if state is None:
            return False
        adapter = {k: v.to(self.accelerator.device) for k, v in state["adapter"].items()}
        load_lora_state_dict(self.parts.denoiser, adapter)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.tracker = PerPromptStatTracker.from_state_dict(state["tracker"])
        set_rng_state(state["rng"])
        self.epoch, self.history, self.evals = state["epoch"], state["history"], state["evals"]
        self.grid_before = state["grid_before"]
        return True

    # ---------------------------------------------------------------------------------------- output
    def _finish(self, seconds: float) -> DDPOResult:
        before = self.evals[0] if self.evals else {}
        after = self.evals[-1] if self.evals else {}
        summary: dict[str, Any] = {
            "epochs": self.epoch,
            "eval_reward_before": before.get("eval_reward_mean"),
            "eval_reward_after": after.get("eval_reward_mean"),
            "eval_gold_reward_before": before.get("eval_gold_reward_mean"),
            "eval_gold_reward_after": after.get("eval_gold_reward_mean"),
            "evals": self.evals,
            "history": self.history,
            "seconds_this_attempt": seconds,
            "config": self.config.to_dict(),
            "algorithm": self.algorithm,
        }
        self.accelerator.wait_for_everyone()
        if not self.is_main:
            return DDPOResult(None, None, summary)
        with self._evaluated_weights():
            adapter_dir = save_lora(self.parts.denoiser, self.output_dir) if self.output_dir else None
            grid = self._grid_png()
        metadata = {"rows": ["before", "after"], "prompts": self.eval_prompts[: self.config.grid_prompts]}
        self.ctx.save_artifact("eval_grid.png", grid, kind="image", metadata=metadata)
        summary["adapter_dir"] = str(adapter_dir) if adapter_dir else None
        return DDPOResult(adapter_dir, grid, summary)

    def _grid_png(self) -> bytes:
        cfg = self.config
        prompts = self.eval_prompts[: cfg.grid_prompts]
        after = self._sample_deterministic(prompts, [cfg.eval_seed] * len(prompts))
        return grid_png(self.grid_before if self.grid_before is not None else after, after)

    # -------------------------------------------------------------------------------- process helpers
    def _gather(self, values: np.ndarray) -> np.ndarray:
        if self.accelerator.num_processes == 1:
            return values
        tensor = torch.as_tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.gather(tensor).cpu().numpy()


def run_ddpo(
    pipeline: Any,
    config: DDPOConfig | Mapping[str, Any] | None,
    reward_fn: RewardFn,
    train_prompts: Sequence[str],
    eval_prompts: Sequence[str],
    ctx: JobContext,
    output_dir: str | Path,
    gold_reward_fn: RewardFn | None = None,
    parent_lora: str | Path | None = None,
) -> DDPOResult:
    """Build a :class:`DDPOTrainer` and run it (the entry point for the platform's ``finetune`` job)."""
    trainer = DDPOTrainer(
        pipeline, config, reward_fn, train_prompts, eval_prompts, ctx, output_dir, gold_reward_fn, parent_lora
    )
    return trainer.train()

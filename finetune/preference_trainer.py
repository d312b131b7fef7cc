"""The preference trainer: Diffusion-DPO or Diffusion-KTO with LoRA, straight from votes. No Django imports.

Stable Diffusion 1.x/2.x (ε or v prediction) and SDXL (its micro-conditioning: pooled text embeddings from the
second text encoder and time ids from each image's original size, crop and the target size).

One call does everything::

    result = PreferenceTrainer(pipeline, config, examples, eval_prompts, ctx, output_dir).train()

``examples`` come from :func:`finetune.preference_data.build_examples`. Every stored image is encoded once through
the VAE (:class:`~finetune.preference_data.LatentCache`) and every prompt once through the text encoder. A step
draws ``batch_size`` examples (× ``gradient_accumulation`` micro-batches), one timestep and one noise per example
(DPO: the winner and the loser get the same), all from ``(seed, step, micro-batch)`` alone, so a run resumed from
a checkpoint continues bit for bit. The reference is the parent: the same UNet with the adapter disabled, so no
second UNet sits in memory. Checkpoints every ``checkpoint_every`` steps (adapter, optimizer, step, history);
cancel is checked between steps. Every ``eval_every`` steps (and before the first and after the last) the eval
prompts are sampled deterministically (η = 0, fixed seeds) and scored by the optional reward and gold reward, and
the loss's implicit accuracy is measured on 64 fixed training examples with fixed noise (``probe_implicit_accuracy``:
0 for the untouched model, rising as it learns the votes).
Runs under ``accelerate``: the batch is split across processes and only the main process evaluates and writes.
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

from . import checkpoint as ckpt
from .config import ConfigError
from .lora import adapter_disabled, add_lora, load_lora_state_dict, lora_state_dict, save_lora
from .preference_config import PreferenceTuneConfig
from .preference_data import LatentCache, PreferenceExamples
from .preference_losses import denoising_error, diffusion_dpo_loss, diffusion_kto_loss
from .processes import load_shared_checkpoint, mean_over_processes, stop_requested
from .reward import RewardFn, call_reward
from .sampling import Components, encode_prompts, grid_png, sample_deterministic, to_pil
from .trainer import load_base_pipeline, make_accelerator

CHECKPOINT_FORMAT = "imagerlhf-preference-checkpoint/1"
# Fields that may change between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = {"train_steps", "eval_every", "checkpoint_every", "grid_prompts", "encode_batch_size"}
LOG_EVERY = 10  # steps averaged into one metric point
PROBE_EXAMPLES = 64  # training examples whose implicit accuracy (fixed noise) every evaluation reports


@dataclass
class PreferenceResult:
    """What a finished run produced (``adapter_dir`` and ``grid_png`` only on the main process)."""

    adapter_dir: Path | None
    grid_png: bytes | None
    summary: dict[str, Any]


class PreferenceTrainer:
    """Diffusion-DPO / Diffusion-KTO with LoRA on an SD 1.x/2.x or SDXL pipeline (see the module docstring)."""

    def __init__(
        self,
        pipeline: Any,
        config: PreferenceTuneConfig | Mapping[str, Any] | None,
        examples: PreferenceExamples,
        eval_prompts: Sequence[str],
        ctx: JobContext | None = None,
        output_dir: str | Path | None = None,
        reward_fn: RewardFn | None = None,
        gold_reward_fn: RewardFn | None = None,
        parent_lora: str | Path | None = None,
        latent_cache_dir: str | Path | None = None,
        accelerator: Any = None,
    ):
        cfg = config if isinstance(config, PreferenceTuneConfig) else PreferenceTuneConfig.from_dict(config)
        self.config = cfg
        if examples.algorithm != cfg.algorithm:
            raise ConfigError("algorithm", f"the examples were built for {examples.algorithm}, not {cfg.algorithm}")
        if not eval_prompts:
            raise ConfigError("eval_prompts", "at least one evaluation prompt is needed")
        self.accelerator = accelerator or make_accelerator(cfg)
        acc = self.accelerator
        if cfg.batch_size % acc.num_processes:
            raise ConfigError("batch_size", f"must be a multiple of the number of processes ({acc.num_processes})")
        self.is_main = acc.is_main_process
        self.ctx = ctx if (ctx is not None and self.is_main) else NullJobContext()
        self.output_dir = Path(output_dir) if output_dir else None
        self.examples, self.eval_prompts = examples, list(eval_prompts)
        self.reward_fn, self.gold_reward_fn = reward_fn, gold_reward_fn

        autocast = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision)
        on_cuda = acc.device.type == "cuda"
        if isinstance(pipeline, str | Path):
            pipeline = load_base_pipeline(pipeline, autocast if (autocast and on_cuda) else torch.float32)
        self.parts = Components.from_pipeline(pipeline, acc.device, autocast if on_cuda else None)
        self.pipeline = pipeline
        unet = self.parts.unet
        added = getattr(unet.config, "addition_embed_type", None)
        if added not in (None, "text_time") or (added and getattr(pipeline, "text_encoder_2", None) is None):
            raise ConfigError(
                "model_version",
                f"this UNet takes added conditioning {added!r}; preference tuning supports SD 1.x/2.x and SDXL",
            )
        self.sdxl = added == "text_time"  # micro-conditioning: pooled text embeddings and size/crop time ids
        if self.sdxl:
            pipeline.text_encoder_2.to(acc.device).requires_grad_(False).eval()
            pipeline.scheduler = self.parts.scheduler  # its evaluation images use DDIM, η = 0, as SD's do
        self.prediction_type = self.parts.scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError("model_version", f"unsupported prediction type {self.prediction_type!r}")
        params = add_lora(
            unet,
            rank=cfg.lora_rank,
            alpha=cfg.lora_alpha or None,
            targets=cfg.lora_targets,
            parent_dir=parent_lora,
            init_seed=cfg.seed,
        )
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.adam_weight_decay,
            eps=cfg.adam_epsilon,
        )
        self.params = params
        self.model, self.optimizer = acc.prepare(unet, optimizer)
        self.negative_embeds = encode_prompts(self.parts, [""])
        default = self.parts.default_size()
        self.size = (cfg.height or default[0], cfg.width or default[1])
        self.cache = LatentCache(
            self.parts.vae, self.size, acc.device, latent_cache_dir, vae_fingerprint=_fingerprint(self.parts.vae)
        )
        self.prompt_embeds: dict[str, torch.Tensor] = {}
        self.pooled_embeds: dict[str, torch.Tensor] = {}  # SDXL only
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.grid_before: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------- the run
    def train(self) -> PreferenceResult:
        """Run (or resume) to ``config.train_steps``; returns the adapter folder, the grid and a summary."""
        cfg, started = self.config, time.perf_counter()
        self._prepare_data()
        if not self._resume():
            self._evaluate(0)
            self._save_checkpoint()
        window: list[dict[str, float]] = []
        while self.step < cfg.train_steps:
            self._stop_if_asked()
            window.append(self._train_step())
            self.step += 1
            checkpoint_due = self.step % cfg.checkpoint_every == 0 or self.step == cfg.train_steps
            if self.step % LOG_EVERY == 0 or checkpoint_due:  # a checkpoint closes the window: resumes log alike
                metrics = _mean(window)
                window = []
                self.history.append({"step": self.step, **metrics})
                self.ctx.log_metrics(self.step, metrics)
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.train_steps:
                self._evaluate(self.step)
            if checkpoint_due:
                self._save_checkpoint()
            self.ctx.report_progress(0.05 + 0.9 * self.step / cfg.train_steps, f"step {self.step}/{cfg.train_steps}")
        if not self.evals or self.evals[-1]["step"] != self.step:
            self._evaluate(self.step)
        result = self._finish(time.perf_counter() - started)
        self.ctx.report_progress(1.0, "done")
        return result

    def _prepare_data(self) -> None:
        """Latents of every image (once, or from the disk cache) and text embeddings of every prompt."""
        if self.prompt_embeds:
            return
        images = self.examples.images
        total = max(1, len(images))

        def encoded(done: int) -> None:
            self.ctx.report_progress(0.05 * done / total, f"encoded {done}/{len(images)} images")

        self.cache.fill(images, self.config.encode_batch_size, on_batch=encoded)
        prompts = self.examples.prompts
        for start in range(0, len(prompts), 64):
            chunk = prompts[start : start + 64]
            if self.sdxl:
                with torch.no_grad():
                    embeds, _, pooled, _ = self.pipeline.encode_prompt(
                        prompt=chunk, device=self.accelerator.device, do_classifier_free_guidance=False
                    )
                self.pooled_embeds.update(zip(chunk, pooled.cpu(), strict=True))
            else:
                embeds = encode_prompts(self.parts, chunk)
            self.prompt_embeds.update(zip(chunk, embeds.cpu(), strict=True))

    def _conditions(self, prompts: list[str], keys: list[str]) -> tuple[torch.Tensor, dict | None]:
        """Text embeddings of ``prompts`` and, for SDXL, the added conditioning of the images ``keys``: pooled
        text embeddings and time ids (original size, crop top-left, target size)."""
        device = self.accelerator.device
        embeds = torch.stack([self.prompt_embeds[p] for p in prompts]).to(device)
        if not self.sdxl:
            return embeds, None
        pooled = torch.stack([self.pooled_embeds[p] for p in prompts]).to(device)
        time_ids = torch.tensor([[*self.cache.micro[key], *self.size] for key in keys], dtype=embeds.dtype)
        return embeds, {"text_embeds": pooled, "time_ids": time_ids.to(device)}

    def _stop_if_asked(self) -> None:
        """Cooperative cancel: all processes agree (the main one asks the context)."""
        if stop_requested(self.ctx, self.accelerator):
            raise JobCancelled(
                f"Cancelled at step {self.step} of {self.config.train_steps}; resumable from the last checkpoint."
            )

    # ---------------------------------------------------------------------------------------- one step
    def _train_step(self) -> dict[str, float]:
        cfg, acc = self.config, self.accelerator
        self.model.train()
        stats: list[dict[str, float]] = []
        for micro in range(cfg.gradient_accumulation):
            last = micro == cfg.gradient_accumulation - 1
            sync = acc.no_sync(self.model) if (not last and acc.num_processes > 1) else contextlib.nullcontext()
            with sync:
                loss, micro_stats = self._micro_batch(micro)
                acc.backward(loss / cfg.gradient_accumulation)
            stats.append(micro_stats)
        grad_norm = acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        averaged = mean_over_processes(self.accelerator, _mean(stats))
        averaged["grad_norm"] = float(grad_norm)
        return averaged

    def _draw(self, micro: int) -> tuple[np.ndarray, torch.Generator]:
        """This process's share of the micro-batch's example indices, and a generator for its noise and timesteps:
        a function of (seed, step, micro-batch, process) only."""
        cfg, acc = self.config, self.accelerator
        rng = np.random.default_rng([cfg.seed, self.step, micro])
        indices = rng.integers(0, len(self.examples), size=cfg.batch_size)
        share = cfg.batch_size // acc.num_processes
        mine = indices[acc.process_index * share : (acc.process_index + 1) * share]
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)) + acc.process_index)
        return mine, generator

    def _noised(self, latents: torch.Tensor, generator: torch.Generator, pairs: int = 1):
        """Noise and timesteps drawn once per example (shared by the ``pairs`` images of an example), the noised
        latents and the training target (ε, or v for a v-prediction model)."""
        count = latents.shape[0] // pairs
        scheduler = self.parts.scheduler
        noise = torch.randn((count, *latents.shape[1:]), generator=generator).repeat(pairs, 1, 1, 1)
        steps = scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (count,), generator=generator).repeat(pairs)
        device = self.accelerator.device
        latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = noise if self.prediction_type == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
        return noisy, timesteps, target

    def _predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: tuple, training: bool):
        """(model prediction, reference prediction): the reference is the UNet with the adapter disabled. Outside
        training the unwrapped UNet runs (no collective operation: only the main process evaluates)."""
        parts, (embeds, added) = self.parts, conditions
        model = self.model if training else self.parts.unet
        kwargs = {"encoder_hidden_states": embeds} | ({"added_cond_kwargs": added} if added else {})
        with parts.autocast():
            model_pred = model(noisy, timesteps, **kwargs).sample
        with torch.no_grad(), adapter_disabled(self.parts.unet), parts.autocast():
            ref_pred = model(noisy, timesteps, **kwargs).sample
        return model_pred, ref_pred

    def _micro_batch(self, micro: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows, generator = self._draw(micro)
        return self._loss(rows, generator, training=True)

    @torch.no_grad()
    def implicit_accuracy(self, rows: Sequence[int], seed: int) -> float:
        """The loss's implicit accuracy on these examples, with noise and timesteps drawn from ``seed`` (the same
        draw every call, so the figure moves only with the model): 0 for a model equal to its reference."""
        self._prepare_data()
        self.model.eval()
        generator = torch.Generator().manual_seed(seed)
        hits, size = 0.0, self.config.batch_size
        for start in range(0, len(rows), size):
            chunk = np.asarray(rows[start : start + size])
            _, stats = self._loss(chunk, generator, training=False)
            hits += stats["implicit_accuracy"] * len(chunk)
        return hits / max(1, len(rows))

    def _loss(
        self, rows: np.ndarray, generator: torch.Generator, training: bool
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The algorithm's loss and stats on the examples ``rows`` (noise and timesteps from ``generator``)."""
        cfg, device = self.config, self.accelerator.device
        if cfg.algorithm == "diffusion_dpo":
            chosen = [self.examples.dpo[i] for i in rows]
            keys = [e.winner for e in chosen] + [e.loser for e in chosen]
            latents = self.cache.stack(keys)
            conditions = self._conditions([e.prompt for e in chosen] * 2, keys)
            noisy, timesteps, target = self._noised(latents, generator, pairs=2)
            model_pred, ref_pred = self._predict(noisy, timesteps, conditions, training)
            (model_w, model_l), (ref_w, ref_l), (target_w, target_l) = (
                model_pred.chunk(2),
                ref_pred.chunk(2),
                target.chunk(2),
            )
            labels = torch.tensor([e.label for e in chosen], device=device)
            soft = bool((labels != 1.0).any())
            return diffusion_dpo_loss(
                model_w, model_l, ref_w, ref_l, target_w, target_l, beta=cfg.beta, label_w=labels if soft else None
            )
        chosen = [self.examples.kto[i] for i in rows]
        keys = [e.image for e in chosen]
        latents = self.cache.stack(keys)
        conditions = self._conditions([e.prompt for e in chosen], keys)
        noisy, timesteps, target = self._noised(latents, generator)
        model_pred, ref_pred = self._predict(noisy, timesteps, conditions, training)
        desirable = torch.tensor([e.desirable for e in chosen], device=device)
        point = None
        if training and self.accelerator.num_processes > 1:  # one reference point for the whole batch
            gain = (denoising_error(ref_pred, target) - denoising_error(model_pred, target)).detach().mean()
            point = self.accelerator.reduce(gain, reduction="mean").clamp(min=0)
        return diffusion_kto_loss(
            model_pred,
            ref_pred,
            target,
            desirable,
            beta=cfg.beta,
            desirable_weight=cfg.desirable_weight,
            undesirable_weight=cfg.undesirable_weight,
            reference_point=point,
        )

    # ------------------------------------------------------------------------------------- evaluation
    def _evaluate(self, step: int) -> dict[str, float]:
        """Deterministic (η = 0, fixed seeds) samples of the eval prompts, scored (main process only)."""
        if not self.is_main:
            return {}
        cfg = self.config
        prompts = [p for p in self.eval_prompts for _ in range(cfg.eval_images_per_prompt)]
        seeds = [cfg.eval_seed + k for _ in self.eval_prompts for k in range(cfg.eval_images_per_prompt)]
        began = time.perf_counter()
        self.model.eval()
        pixels = self.sample_eval(prompts, seeds)
        result: dict[str, float] = {"step": step}
        probe = np.random.default_rng([cfg.seed, 7]).permutation(len(self.examples))[:PROBE_EXAMPLES]
        result["probe_implicit_accuracy"] = self.implicit_accuracy(probe, seed=cfg.seed + 1)
        images = to_pil(pixels)
        if self.reward_fn is not None:
            result["eval_reward_mean"] = float(call_reward(self.reward_fn, prompts, images).mean())
        if self.gold_reward_fn is not None:
            gold = call_reward(self.gold_reward_fn, prompts, images, what="gold reward")
            result["eval_gold_reward_mean"] = float(gold.mean())
        result["seconds_eval"] = time.perf_counter() - began
        if step == 0 and self.grid_before is None:
            per = cfg.eval_images_per_prompt
            self.grid_before = pixels[::per][: cfg.grid_prompts].copy()
        self.evals.append(result)
        self.ctx.log_metrics(step, {k: v for k, v in result.items() if k != "step"})
        return result

    def sample_eval(self, prompts: Sequence[str], seeds: Sequence[int]) -> np.ndarray:
        """η = 0 images of the current model (the config's sampler settings)."""
        cfg = self.config
        if self.sdxl:
            return self._sample_eval_sdxl(list(prompts), list(seeds))
        return sample_deterministic(
            self.parts,
            list(prompts),
            list(seeds),
            cfg.sample_steps,
            cfg.guidance_scale,
            cfg.encode_batch_size,
            self.size,
            self.negative_embeds,
        )

    @torch.no_grad()
    def _sample_eval_sdxl(self, prompts: list[str], seeds: list[int]) -> np.ndarray:
        """SDXL's evaluation images through its own pipeline (DDIM, η = 0, one generator per seed)."""
        cfg, out = self.config, []
        for start in range(0, len(prompts), cfg.encode_batch_size):
            chunk = slice(start, start + cfg.encode_batch_size)
            with self.parts.autocast():
                images = self.pipeline(
                    prompt=prompts[chunk],
                    num_inference_steps=cfg.sample_steps,
                    guidance_scale=cfg.guidance_scale,
                    height=self.size[0],
                    width=self.size[1],
                    eta=0.0,
                    generator=[torch.Generator().manual_seed(int(s)) for s in seeds[chunk]],
                    output_type="np",
                ).images
            out.append((np.clip(images, 0, 1) * 255).round().astype(np.uint8))
        return np.concatenate(out)

    # ------------------------------------------------------------------------------ checkpoint / resume
    def state_bytes(self) -> bytes:
        return ckpt.dumps(
            {
                "config": self.config.to_dict(),
                "step": self.step,
                "adapter": lora_state_dict(self.parts.unet),
                "optimizer": self.optimizer.state_dict(),
                "history": self.history,
                "evals": self.evals,
                "grid_before": self.grid_before,
                "examples": len(self.examples),
            },
            fmt=CHECKPOINT_FORMAT,
        )

    def _save_checkpoint(self) -> None:
        if self.is_main:
            self.ctx.save_checkpoint(self.state_bytes())

    def _resume(self) -> bool:
        """Load the context's checkpoint (read by the main process, shared with the others); False if none."""
        state = load_shared_checkpoint(
            self.ctx, self.accelerator, CHECKPOINT_FORMAT, self.config.to_dict(), RESUMABLE_CHANGES
        )
        if state is None:
            return False
        if state["examples"] != len(self.examples):
            raise JobFailed("The checkpoint was made on other votes; start a new run for these.")
        load_lora_state_dict(self.parts.unet, {k: v.to(self.accelerator.device) for k, v in state["adapter"].items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history, self.evals = state["step"], state["history"], state["evals"]
        self.grid_before = state["grid_before"]
        return True

    # ---------------------------------------------------------------------------------------- output
    def _finish(self, seconds: float) -> PreferenceResult:
        before = self.evals[0] if self.evals else {}
        after = self.evals[-1] if self.evals else {}
        last = self.history[-1] if self.history else {}
        summary: dict[str, Any] = {
            "algorithm": self.config.algorithm,
            "steps": self.step,
            "examples": self.examples.counts(),
            "dropped": self.examples.dropped,
            "images_encoded": self.cache.encoded,
            "final_implicit_accuracy": last.get("implicit_accuracy"),
            "final_loss": last.get("loss"),
            "eval_reward_before": before.get("eval_reward_mean"),
            "eval_reward_after": after.get("eval_reward_mean"),
            "eval_gold_reward_before": before.get("eval_gold_reward_mean"),
            "eval_gold_reward_after": after.get("eval_gold_reward_mean"),
            "evals": self.evals,
            "history": self.history,
            "seconds_this_attempt": seconds,
            "config": self.config.to_dict(),
        }
        self.accelerator.wait_for_everyone()
        if not self.is_main:
            return PreferenceResult(None, None, summary)
        adapter_dir = save_lora(self.parts.unet, self.output_dir) if self.output_dir else None
        cfg = self.config
        prompts = self.eval_prompts[: cfg.grid_prompts]
        after_pixels = self.sample_eval(prompts, [cfg.eval_seed] * len(prompts))
        grid = grid_png(self.grid_before if self.grid_before is not None else after_pixels, after_pixels)
        self.ctx.save_artifact(
            "eval_grid.png", grid, kind="image", metadata={"rows": ["before", "after"], "prompts": prompts}
        )
        summary["adapter_dir"] = str(adapter_dir) if adapter_dir else None
        return PreferenceResult(adapter_dir, grid, summary)


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([row[key] for row in rows if key in row])) for key in rows[0]} if rows else {}


def _fingerprint(vae: torch.nn.Module) -> str:
    """A short name for a VAE's weights (its config and a sum of its parameters), naming the latent cache folder."""
    import hashlib

    total = sum(float(p.detach().float().sum()) for p in vae.parameters())
    text = f"{sorted(vae.config.items())}{total:.6e}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_preference_tune(
    pipeline: Any,
    config: PreferenceTuneConfig | Mapping[str, Any] | None,
    examples: PreferenceExamples,
    eval_prompts: Sequence[str],
    ctx: JobContext,
    output_dir: str | Path,
    gold_reward_fn: RewardFn | None = None,
    parent_lora: str | Path | None = None,
    latent_cache_dir: str | Path | None = None,
) -> PreferenceResult:
    """Build a :class:`PreferenceTrainer` and run it (the entry point for the platform's ``preference_tune`` job)."""
    trainer = PreferenceTrainer(
        pipeline,
        config,
        examples,
        eval_prompts,
        ctx,
        output_dir,
        gold_reward_fn=gold_reward_fn,
        parent_lora=parent_lora,
        latent_cache_dir=latent_cache_dir,
    )
    return trainer.train()

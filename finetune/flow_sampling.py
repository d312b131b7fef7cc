"""Sampling with a flow-matching pipeline's parts (SD3/SD3.5), recording what Flow-GRPO trains on. No Django.

:class:`FlowComponents` is to a ``StableDiffusion3Pipeline`` what :class:`finetune.sampling.Components` is to a
Stable Diffusion one, with the same methods, so that :class:`finetune.trainer.DDPOTrainer` runs either: DDPO on
a DDIM UNet, or Flow-GRPO (Liu et al., 2025) on a flow transformer. Sampling integrates the flow SDE of
:mod:`finetune.flow_logprob` (``noise_level`` > 0, every step a Gaussian with an exact log-probability) with
classifier-free guidance and one ``torch.Generator`` per sample; ``noise_level = 0`` is the deterministic Euler
ODE, the pipeline's own sampler, which evaluation uses so that its images are the ones a plain
``StableDiffusion3Pipeline`` makes from the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from generators.pipeline import is_flow_matching, max_sequence_length

from .ddim_logprob import gaussian_log_prob
from .flow_logprob import flow_sde_mean_std, sde_step_with_logprob
from .sampling import LatentParts, Trajectories, decode


def is_flow_pipeline(pipe) -> bool:
    """Whether ``pipe`` is a flow-matching transformer pipeline (a ``transformer`` and a flow-matching scheduler)."""
    return getattr(pipe, "transformer", None) is not None and is_flow_matching(pipe)


def freeze_parts(pipe, names: Sequence[str], device: str | torch.device) -> torch.device:
    """Move the pipeline's modules ``names`` (those it has) to ``device``, frozen and in eval mode; the device."""
    device = torch.device(device)
    for name in names:
        module = getattr(pipe, name, None)
        if module is not None:
            module.to(device)
            module.requires_grad_(False)
            module.eval()
    return device


@dataclass
class FlowConditioning:
    """Text conditioning of B prompts: the joint token states and the pooled projection."""

    embeds: torch.Tensor  # (B, L, D)
    pooled: torch.Tensor  # (B, P)

    def rows(self, index: torch.Tensor | slice) -> FlowConditioning:
        return FlowConditioning(self.embeds[index], self.pooled[index])

    def expand(self, count: int) -> FlowConditioning:
        return FlowConditioning(self.embeds.expand(count, -1, -1), self.pooled.expand(count, -1))


def integrate_flow(
    scheduler,
    velocity_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    latents: torch.Tensor,
    noise: float,
    generators: Sequence[torch.Generator],
    cond: FlowConditioning,
) -> Trajectories:
    """Integrate from ``latents`` over ``scheduler.timesteps`` (already set): the flow SDE with noise level ``noise``
    and each step's log-probability, or the deterministic Euler ODE at ``noise = 0`` (log-probabilities 0).
    ``velocity_at(x, t)`` is the guided model velocity; any latent layout works (SD3's (B, C, H, W), FLUX's packed
    (B, N, C)): the step is elementwise."""
    all_latents, log_probs = [latents], []
    for t in scheduler.timesteps:
        velocity = velocity_at(latents, t)
        if noise > 0:
            latents, log_prob, _, _ = sde_step_with_logprob(
                scheduler, velocity, t, latents, noise_level=noise, generator=list(generators)
            )
        else:
            mean, _, _ = flow_sde_mean_std(scheduler, velocity, t, latents, noise_level=0.0)
            latents, log_prob = mean.to(latents.dtype), torch.zeros(len(latents), device=latents.device)
        all_latents.append(latents)
        log_probs.append(log_prob)
    return Trajectories(
        latents=torch.stack(all_latents, dim=1),
        log_probs=torch.stack(log_probs, dim=1),
        timesteps=scheduler.timesteps.clone(),
        prompt_embeds=cond.embeds,
        pooled_embeds=cond.pooled,
    )


def step_log_prob(
    scheduler, velocity: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, x_next: torch.Tensor, noise: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_prob, mean, std)`` of the recorded step ``x_t → x_next`` under the flow SDE given the velocity."""
    mean, std, _ = flow_sde_mean_std(scheduler, velocity, t, x_t, noise_level=noise)
    return gaussian_log_prob(x_next, mean, std), mean, std


@dataclass
class FlowComponents(LatentParts):
    """The pipeline parts Flow-GRPO uses; ``transformer`` carries the LoRA adapter."""

    pipeline: object  # its text encoders encode prompts (``encode_prompt``)
    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    max_sequence_length: int = 256  # T5 tokens per prompt (SD3's default)
    family: str = "flow"

    @classmethod
    def from_pipeline(cls, pipe, device: str | torch.device, autocast_dtype: torch.dtype | None = None):
        """Take the parts of a diffusers ``StableDiffusion3Pipeline`` (frozen, on ``device``)."""
        if not is_flow_pipeline(pipe):
            raise ValueError(f"{type(pipe).__name__} is not a flow-matching transformer pipeline")
        device = freeze_parts(pipe, ("text_encoder", "text_encoder_2", "text_encoder_3", "vae", "transformer"), device)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # our own: set_timesteps mutates it
        length = max_sequence_length(pipe) or 256
        return cls(pipe, pipe.transformer, pipe.vae, scheduler, device, autocast_dtype, length)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    def default_size(self) -> tuple[int, int]:
        size = self.transformer.config.sample_size * self.latent_factor()
        return size, size

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> FlowConditioning:
        """The pipeline's own prompt encoding (both CLIPs and T5) of ``prompts``."""
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompt=list(prompts),
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return FlowConditioning(embeds, pooled)

    def negative(self) -> FlowConditioning:
        """The conditioning of the empty prompt (the pipeline's unconditional branch)."""
        return self.encode([""])

    def velocity(
        self,
        model: torch.nn.Module,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: FlowConditioning,
        negative: FlowConditioning,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The transformer's velocity with classifier-free guidance; ``timesteps`` a scalar or one per sample."""
        count = latents.shape[0]
        t = timesteps.expand(count) if timesteps.ndim == 0 else timesteps
        with self.autocast():
            if guidance_scale == 1.0:
                return model(latents, cond.embeds, cond.pooled, t).sample
            negative = negative.expand(count) if negative.embeds.shape[0] != count else negative
            both = model(
                torch.cat([latents, latents]),
                torch.cat([negative.embeds, cond.embeds]),
                torch.cat([negative.pooled, cond.pooled]),
                torch.cat([t, t]),
            ).sample
        uncond, text = both.chunk(2)
        return uncond + guidance_scale * (text - uncond)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        steps: int,
        guidance_scale: float,
        noise: float,
        size: tuple[int, int] | None = None,
        negative: FlowConditioning | None = None,
    ) -> tuple[np.ndarray, Trajectories]:
        """One image per (prompt, seed) by the flow SDE with noise level ``noise`` (0: the Euler ODE)."""
        from diffusers.utils.torch_utils import randn_tensor

        if len(prompts) != len(seeds):
            raise ValueError("prompts and seeds must have the same length")
        height, width = size or self.default_size()
        factor = self.latent_factor()
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        cond = self.encode(prompts)
        negative = negative if negative is not None else self.negative()
        self.scheduler.set_timesteps(steps, device=self.device)
        shape = (len(prompts), self.transformer.config.in_channels, height // factor, width // factor)
        latents = randn_tensor(shape, generator=generators, device=self.device, dtype=cond.embeds.dtype)
        trajectories = integrate_flow(
            self.scheduler,
            lambda x, t: self.velocity(self.transformer, x, t, cond, negative, guidance_scale),
            latents,
            noise,
            generators,
            cond,
        )
        return decode(self, trajectories.latents[:, -1]), trajectories

    def transition(
        self,
        model: torch.nn.Module,
        batch: Trajectories,
        owner: torch.Tensor,
        positions: torch.Tensor,
        negative: FlowConditioning,
        guidance_scale: float,
        noise: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob, mean, std)`` of the recorded steps ``positions`` of trajectories ``owner`` under ``model``."""
        x_t, x_next = batch.latents[owner, positions], batch.latents[owner, positions + 1]
        t = batch.timesteps[positions]
        cond = FlowConditioning(batch.prompt_embeds[owner], batch.pooled_embeds[owner])
        velocity = self.velocity(model, x_t, t, cond, negative, guidance_scale)
        return step_log_prob(self.scheduler, velocity, t, x_t, x_next, noise)

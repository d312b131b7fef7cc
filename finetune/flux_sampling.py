"""Sampling with a FLUX.1 pipeline's parts (``FluxPipeline``), recording what Flow-GRPO trains on. No Django.

:class:`FluxComponents` has the methods of :class:`finetune.flow_sampling.FlowComponents` (SD3), so that
:class:`finetune.trainer.DDPOTrainer` runs Flow-GRPO on a FLUX transformer unchanged. What FLUX does differently,
each step as ``FluxPipeline.__call__`` does it (so that ``noise = 0``, the Euler ODE, makes the images a plain
``FluxPipeline`` makes from the same seeds):

- prompts: ``encode_prompt`` (CLIP's pooled output, T5's token states at ``max_sequence_length``; text ids are 0);
- latents are packed: 2×2 latent cells become one token of 4·C channels, (B, N, 4C), with position ids per token;
  the initial noise is drawn unpacked from one generator per sample (``prepare_latents``) and then packed. The
  trajectories hold packed latents and the flow SDE of :mod:`finetune.flow_logprob` acts on them (it is elementwise,
  and its log-probability is a mean over the non-batch dimensions), as Flow-GRPO's and DanceGRPO's FLUX code does;
- timesteps: σ = linspace(1, 1/steps), shifted by μ = ``calculate_shift(N)`` where the scheduler shifts
  dynamically; the transformer gets ``t / 1000``;
- guidance: no classifier-free guidance. FLUX.1-dev is guidance-distilled: ``guidance_scale`` goes into the
  transformer's guidance embedding (one forward pass per step); a transformer without ``guidance_embeds``
  (FLUX.1-schnell) takes no guidance at all and ``guidance_scale`` is ignored. The pipeline's optional "true CFG"
  (``true_cfg_scale`` with a negative prompt) is not driven, so :meth:`FluxComponents.negative` is None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from generators.pipeline import max_sequence_length

from .flow_sampling import FlowConditioning, freeze_parts, integrate_flow, is_flow_pipeline, step_log_prob
from .sampling import LatentParts, Trajectories, decode


def is_flux_pipeline(pipe) -> bool:
    """Whether ``pipe`` is a diffusers ``FluxPipeline`` (or a subclass)."""
    from diffusers import FluxPipeline

    return isinstance(pipe, FluxPipeline)


@dataclass
class FluxComponents(LatentParts):
    """The ``FluxPipeline`` parts Flow-GRPO uses; ``transformer`` carries the LoRA adapter."""

    pipeline: object  # its text encoders encode prompts; its static helpers pack latents and make position ids
    transformer: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    max_sequence_length: int = 512  # T5 tokens per prompt (FLUX's default)
    family: str = "flow"
    # Packed token count → (rows, columns) of the 2×2-cell grid, recorded by ``sample`` so that ``transition`` can
    # rebuild the position ids of recorded (packed, so shapeless) latents.
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)
    _schedule: tuple[int, int] | None = None  # (steps, tokens) the scheduler's timesteps were set for

    @classmethod
    def from_pipeline(cls, pipe, device: str | torch.device, autocast_dtype: torch.dtype | None = None):
        """Take the parts of a diffusers ``FluxPipeline`` (frozen, on ``device``)."""
        if not (is_flow_pipeline(pipe) and is_flux_pipeline(pipe)):
            raise ValueError(f"{type(pipe).__name__} is not a FluxPipeline")
        device = freeze_parts(pipe, ("text_encoder", "text_encoder_2", "vae", "transformer"), device)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # our own: set_timesteps mutates it
        length = max_sequence_length(pipe) or 512
        return cls(pipe, pipe.transformer, pipe.vae, scheduler, device, autocast_dtype, length)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer

    def default_size(self) -> tuple[int, int]:
        """The pipeline's default (height, width): ``default_sample_size`` (128) latent cells, 1024 px for FLUX.1."""
        size = int(getattr(self.pipeline, "default_sample_size", 128)) * self.latent_factor()
        return size, size

    def cell(self) -> int:
        """Pixels per packed token along a side (the VAE's factor × the 2×2 packing)."""
        return 2 * self.latent_factor()

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> FlowConditioning:
        """The pipeline's own prompt encoding: T5 token states and CLIP's pooled output."""
        embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=list(prompts),
            prompt_2=None,
            device=self.device,
            num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        return FlowConditioning(embeds, pooled)

    def negative(self) -> None:
        """None: FLUX samples in one guided pass (the guidance embedding), there is no unconditional branch."""
        return None

    # ------------------------------------------------------------------------------------ FLUX specifics
    def set_timesteps(self, steps: int, tokens: int) -> None:
        """The scheduler's schedule for ``steps`` steps on ``tokens`` packed tokens, as ``FluxPipeline`` sets it."""
        if self._schedule == (steps, tokens):
            return
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        config = self.scheduler.config
        sigmas = None if config.get("use_flow_sigmas") else np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift(
            tokens,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        retrieve_timesteps(self.scheduler, steps, self.device, sigmas=sigmas, mu=mu)
        self._schedule = (steps, tokens)

    def grid(self, tokens: int) -> tuple[int, int]:
        """(rows, columns) of packed latents with ``tokens`` tokens, as the last ``sample`` of that many made them."""
        if tokens not in self.grids:
            side = int(round(tokens**0.5))
            if side * side != tokens:
                raise ValueError(f"no sample of {tokens} packed tokens was drawn: their grid is unknown")
            self.grids[tokens] = (side, side)
        return self.grids[tokens]

    def image_ids(self, tokens: int, dtype: torch.dtype) -> torch.Tensor:
        """The packed tokens' position ids (N, 3) (``FluxPipeline._prepare_latent_image_ids``)."""
        rows, columns = self.grid(tokens)
        return self.pipeline._prepare_latent_image_ids(1, rows, columns, self.device, dtype)

    def initial_noise(self, generators: list[torch.Generator], size: tuple[int, int], dtype: torch.dtype):
        """Packed x_1 (B, N, 4C) drawn as ``FluxPipeline.prepare_latents`` draws it from one generator per sample."""
        from diffusers.utils.torch_utils import randn_tensor

        height, width = size
        cell = self.cell()
        if height % cell or width % cell:
            raise ValueError(f"FLUX images need sides that are multiples of {cell} pixels, not {height}×{width}")
        rows, columns = height // cell, width // cell
        channels = self.transformer.config.in_channels // 4
        shape = (len(generators), channels, 2 * rows, 2 * columns)
        latents = randn_tensor(shape, generator=generators, device=self.device, dtype=dtype)
        self.grids[rows * columns] = (rows, columns)
        return self.pipeline._pack_latents(latents, len(generators), channels, 2 * rows, 2 * columns)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Packed final latents to (B, H, W, 3) uint8 pixels: unpacked, then the VAE's scale and shift undone."""
        rows, columns = self.grid(latents.shape[1])
        cell = self.cell()
        unpacked = self.pipeline._unpack_latents(latents, rows * cell, columns * cell, self.latent_factor())
        return decode(self, unpacked)

    # ------------------------------------------------------------------------------------ the policy
    def velocity(
        self,
        model: torch.nn.Module,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: FlowConditioning,
        guidance_scale: float,
    ) -> torch.Tensor:
        """The transformer's velocity on packed ``latents``; ``timesteps`` a scalar or one per sample.
        ``guidance_scale`` goes into the guidance embedding where the transformer has one (else it is unused)."""
        count, tokens = latents.shape[:2]
        t = (timesteps.expand(count) if timesteps.ndim == 0 else timesteps).to(latents.dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((count,), guidance_scale, device=latents.device, dtype=torch.float32)
        text_ids = torch.zeros(cond.embeds.shape[1], 3, device=latents.device, dtype=cond.embeds.dtype)
        with self.autocast():
            return model(
                hidden_states=latents,
                timestep=t / 1000,
                guidance=guidance,
                pooled_projections=cond.pooled,
                encoder_hidden_states=cond.embeds,
                txt_ids=text_ids,
                img_ids=self.image_ids(tokens, latents.dtype),
                return_dict=False,
            )[0]

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        steps: int,
        guidance_scale: float,
        noise: float,
        size: tuple[int, int] | None = None,
        negative: None = None,
    ) -> tuple[np.ndarray, Trajectories]:
        """One image per (prompt, seed) by the flow SDE with noise level ``noise`` (0: the Euler ODE, FluxPipeline's
        sampler); the trajectories hold packed latents (B, T + 1, N, 4C). ``negative`` is unused (see the module)."""
        if len(prompts) != len(seeds):
            raise ValueError("prompts and seeds must have the same length")
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        cond = self.encode(prompts)
        latents = self.initial_noise(generators, size or self.default_size(), cond.embeds.dtype)
        self.set_timesteps(steps, latents.shape[1])
        trajectories = integrate_flow(
            self.scheduler,
            lambda x, t: self.velocity(self.transformer, x, t, cond, guidance_scale),
            latents,
            noise,
            generators,
            cond,
        )
        return self.decode(trajectories.latents[:, -1]), trajectories

    def transition(
        self,
        model: torch.nn.Module,
        batch: Trajectories,
        owner: torch.Tensor,
        positions: torch.Tensor,
        negative: None,
        guidance_scale: float,
        noise: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob, mean, std)`` of the recorded steps ``positions`` of trajectories ``owner`` under ``model``."""
        x_t, x_next = batch.latents[owner, positions], batch.latents[owner, positions + 1]
        self.set_timesteps(len(batch.timesteps), x_t.shape[1])
        t = batch.timesteps[positions]
        cond = FlowConditioning(batch.prompt_embeds[owner], batch.pooled_embeds[owner])
        velocity = self.velocity(model, x_t, t, cond, guidance_scale)
        return step_log_prob(self.scheduler, velocity, t, x_t, x_next, noise)

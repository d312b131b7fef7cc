"""Losses that learn straight from votes: Diffusion-DPO (pairs) and Diffusion-KTO (single likes and dislikes).

No Django. Both compare the tuned model's denoising error with the reference model's (the parent: the same UNet
with the adapter disabled) on the same noised latents. With ``err(x) = mean over non-batch dims of
(prediction − target)²``:

- **Diffusion-DPO** (Wallace et al., 2024): for a pair (winner w, loser l) noised with the same noise and timestep,
  ``x = −β/2 · [(err_θ(w) − err_θ(l)) − (err_ref(w) − err_ref(l))]`` and the loss is ``−log σ(x)``; with a soft
  label ``p`` (the probability that w is the better image, 0.5 for a tie) it is ``−[p log σ(x) + (1−p) log σ(−x)]``.
- **Diffusion-KTO** (Li et al., 2024): per image, ``g = err_ref − err_θ`` (how much more likely the tuned model makes
  it than the reference), the reference point ``z = max(0, mean g)`` over the batch (no gradient), and the loss
  ``λ_D (1 − σ(β (g − z)))`` for a liked image, ``λ_U (1 − σ(−β (g − z)))`` for a disliked one.

The stats are plain floats for the run's metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def denoising_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over every non-batch dimension, in fp32."""
    squared = (prediction.float() - target.float()).pow(2)
    return squared.mean(dim=tuple(range(1, squared.dim())))


def diffusion_dpo_loss(
    model_pred_w: torch.Tensor,
    model_pred_l: torch.Tensor,
    ref_pred_w: torch.Tensor,
    ref_pred_l: torch.Tensor,
    target_w: torch.Tensor,
    target_l: torch.Tensor,
    *,
    beta: float,
    label_w: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Diffusion-DPO loss of a batch of pairs and its stats.

    ``label_w`` (optional, shape (B,)): the probability that w is the better image; 1 (the default) for a hard
    vote, 0.5 for a tie. Stats: ``implicit_accuracy`` (share of pairs where the model lowers the winner's error,
    relative to the reference, more than the loser's), ``reward_margin`` (mean x: the implicit reward of the
    winner minus the loser's), ``kl_proxy`` (mean err_θ − err_ref over both images: how far the model has moved
    from the reference on the data; negative when it fits the data better), the mean errors of both models.
    """
    model_w, model_l = denoising_error(model_pred_w, target_w), denoising_error(model_pred_l, target_l)
    with torch.no_grad():
        ref_w, ref_l = denoising_error(ref_pred_w, target_w), denoising_error(ref_pred_l, target_l)
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
    if label_w is None:
        losses = -F.logsigmoid(inside)
    else:
        label = label_w.to(inside)
        losses = -(label * F.logsigmoid(inside) + (1.0 - label) * F.logsigmoid(-inside))
    loss = losses.mean()
    detached = inside.detach()
    stats = {
        "loss": float(loss.detach()),
        "implicit_accuracy": float((detached > 0).float().mean()),
        "reward_margin": float(detached.mean()),
        "kl_proxy": float(((model_w + model_l) - (ref_w + ref_l)).detach().mean() / 2),
        "model_error": float(((model_w + model_l) / 2).detach().mean()),
        "reference_error": float(((ref_w + ref_l) / 2).mean()),
    }
    return loss, stats


def diffusion_kto_loss(
    model_pred: torch.Tensor,
    ref_pred: torch.Tensor,
    target: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    reference_point: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The Diffusion-KTO loss of a batch of single images (``desirable``: bool, shape (B,)) and its stats.

    ``reference_point``: the KL estimate ``z`` to use (for example one averaged over processes); by default the
    batch's ``max(0, mean g)``. Stats: ``implicit_accuracy`` (share of images on the side of z their label asks
    for), ``reward_margin`` (mean g of liked images minus mean g of disliked ones), ``kl_proxy`` (z before the
    clamp), the mean errors.
    """
    model_err = denoising_error(model_pred, target)
    with torch.no_grad():
        ref_err = denoising_error(ref_pred, target)
    gain = ref_err - model_err
    raw_kl = gain.detach().mean()
    point = raw_kl.clamp(min=0) if reference_point is None else reference_point.detach().to(gain)
    sign = desirable.to(gain.device).float() * 2 - 1
    utility = torch.sigmoid(sign * beta * (gain - point))
    liked = desirable.to(gain.device).bool()
    weights = torch.where(liked, desirable_weight, undesirable_weight).to(gain)
    loss = (weights * (1 - utility)).mean()
    detached = gain.detach()
    liked_gain = detached[liked].mean() if liked.any() else detached.new_zeros(())
    disliked_gain = detached[~liked].mean() if (~liked).any() else detached.new_zeros(())
    stats = {
        "loss": float(loss.detach()),
        "implicit_accuracy": float(((sign * (detached - point)) > 0).float().mean()),
        "reward_margin": float(liked_gain - disliked_gain),
        "kl_proxy": float(raw_kl),
        "model_error": float(model_err.detach().mean()),
        "reference_error": float(ref_err.mean()),
    }
    return loss, stats

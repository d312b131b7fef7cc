"""PickScore's loss: cross-entropy of softmax(s_a, s_b) against (1, 0), (0, 1) or (0.5, 0.5), per-prompt weighted.

We subtract the target's entropy (for a tie, log 2: PickScore's "log 0.5 offset"), i.e. the loss is the KL
divergence KL(target ‖ softmax(s_a, s_b)): a perfect prediction costs exactly 0, ties included. The gradient is
the same as plain cross-entropy.
"""

from __future__ import annotations

import torch

__all__ = ["preference_loss", "preference_loss_per_example"]


def preference_loss_per_example(
    scores_a: torch.Tensor, scores_b: torch.Tensor, label_a: torch.Tensor, label_b: torch.Tensor
) -> torch.Tensor:
    """KL(target ‖ softmax(s_a, s_b)) per example = CE − H(target); targets are normalised to sum to 1."""
    logits = torch.stack([scores_a, scores_b], dim=-1).float()
    target = torch.stack([label_a, label_b], dim=-1).to(logits)
    target = target / target.sum(dim=-1, keepdim=True)
    log_probs = torch.log_softmax(logits, dim=-1)
    return (torch.xlogy(target, target) - target * log_probs).sum(dim=-1)


def preference_loss(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean of :func:`preference_loss_per_example` (weights: 1 / examples of the prompt, or uniform)."""
    losses = preference_loss_per_example(scores_a, scores_b, label_a, label_b)
    if weights is None:
        return losses.mean()
    weights = weights.to(losses)
    return (losses * weights).sum() / weights.sum().clamp_min(torch.finfo(losses.dtype).tiny)

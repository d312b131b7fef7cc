"""An exponential moving average of the adapter's weights (Polyak averaging), used for evaluation and the result.

RL fine-tuning's last iterate wanders: with a few dozen images an epoch, the policy's eval reward moves by several
points from one evaluation to the next, so which side of that noise the final epoch lands on decides much of a run's
outcome. Averaging the weights over the last epochs (``decay`` per epoch: about ``1 / (1 - decay)`` epochs) keeps the
trend and drops most of that noise, as Flow-GRPO's reference code does for its evaluations. Training itself (sampling,
the PPO ratio) always uses the live weights; the average is only what is evaluated and saved. No Django.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch


class ParameterEMA:
    """``shadow ← decay · shadow + (1 − decay) · param`` for each trainable parameter, updated by :meth:`update`."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError("decay must be in [0, 1)")
        self.params, self.decay = list(params), float(decay)
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the current weights."""
        for shadow, param in zip(self.shadow, self.params, strict=True):
            shadow.lerp_(param.detach().to(shadow.dtype), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the average; the live weights come back afterwards."""
        live = [p.detach().clone() for p in self.params]
        _copy_into(self.params, self.shadow)
        try:
            yield
        finally:
            _copy_into(self.params, live)

    def state_dict(self) -> list[torch.Tensor]:
        """The averages, copied to the CPU (for checkpoints)."""
        return [s.detach().to("cpu", copy=True) for s in self.shadow]

    def load_state_dict(self, state: Sequence[torch.Tensor]) -> None:
        if len(state) != len(self.shadow) or any(a.shape != b.shape for a, b in zip(state, self.shadow, strict=True)):
            raise ValueError("the checkpoint's weight average does not match this adapter")
        _copy_into(self.shadow, state)


@torch.no_grad()
def _copy_into(targets: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    for target, value in zip(targets, values, strict=True):
        target.copy_(value.to(target.device, target.dtype))

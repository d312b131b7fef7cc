"""Advantage normalisation for DDPO: rewards become z-scores against a baseline, then are clipped.

Three baselines (``mode``):

- ``group`` (the default): each reward is centred on the mean reward of its prompt's images in the same
  batch and divided by the batch's pooled within-prompt spread. Prompt offsets cancel (a reward model's
  score differs a lot from prompt to prompt, and the policy cannot change the prompt), without dividing by
  the noisy spread of a few images and without history from older policies. Needs several images per prompt.
- ``batch``: z-scores over the whole batch (trl's default).
- ``history``: ddpo-pytorch's per-prompt tracker. Each prompt keeps its last ``buffer_size`` rewards; a prompt
  with fewer than ``min_count`` of them is normalised with the whole batch instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

MODES = ("group", "batch", "history")


class PerPromptStatTracker:
    """Turns a batch of (prompt, reward) into clipped advantages (see the module docstring for ``mode``)."""

    def __init__(self, buffer_size: int = 32, min_count: int = 16, clip: float = 5.0, mode: str = "group"):
        if min_count > buffer_size:
            raise ValueError("min_count cannot exceed buffer_size")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.buffer_size, self.min_count, self.clip, self.mode = buffer_size, min_count, clip, mode
        self.buffers: dict[str, deque[float]] = {}

    def update(self, prompts: Sequence[str], rewards: Sequence[float] | np.ndarray) -> np.ndarray:
        """Add this batch's rewards (to the buffers in ``history`` mode) and return their advantages (same order)."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(prompts) != len(rewards):
            raise ValueError("prompts and rewards must have the same length")
        if self.mode == "group":
            residuals = rewards.copy()
            for rows in _rows_by_prompt(prompts).values():
                residuals[rows] -= rewards[rows].mean()
            return np.clip(residuals / (np.sqrt(np.mean(residuals**2)) + 1e-6), -self.clip, self.clip)
        advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
        if self.mode == "history":
            for prompt, rows in _rows_by_prompt(prompts).items():
                buffer = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
                buffer.extend(rewards[rows].tolist())
                if len(buffer) >= self.min_count:
                    history = np.asarray(buffer)
                    advantages[rows] = (rewards[rows] - history.mean()) / (history.std() + 1e-6)
        return np.clip(advantages, -self.clip, self.clip)

    def state_dict(self) -> dict:
        """Plain-Python state (JSON- and pickle-safe)."""
        return {
            "buffer_size": self.buffer_size,
            "min_count": self.min_count,
            "clip": self.clip,
            "mode": self.mode,
            "buffers": {prompt: list(values) for prompt, values in self.buffers.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> PerPromptStatTracker:
        tracker = cls(state["buffer_size"], state["min_count"], state["clip"], state["mode"])
        tracker.buffers = {p: deque(v, maxlen=tracker.buffer_size) for p, v in state["buffers"].items()}
        return tracker

    def stats(self) -> dict[str, float]:
        """How many prompts are tracked and how many have enough history for their own statistics."""
        ready = sum(len(b) >= self.min_count for b in self.buffers.values())
        return {"prompts_tracked": float(len(self.buffers)), "prompts_with_own_stats": float(ready)}


def _rows_by_prompt(prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """A boolean row mask per distinct prompt, in order of first appearance."""
    names = np.asarray(prompts, dtype=object)
    return {prompt: names == prompt for prompt in dict.fromkeys(prompts)}

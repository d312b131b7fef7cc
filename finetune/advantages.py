"""Per-prompt advantage normalisation for DDPO (rolling buffers of rewards, z-scores, clipping)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


class PerPromptStatTracker:
    """Z-scores each reward against the recent rewards of its own prompt.

    Each prompt keeps its last ``buffer_size`` rewards. A prompt with fewer than ``min_count`` of them is
    normalised with the mean and std of the whole current batch instead. Results are clipped to ±``clip``.
    ``per_prompt=False`` always uses the batch statistics.
    """

    def __init__(self, buffer_size: int = 32, min_count: int = 16, clip: float = 5.0, per_prompt: bool = True):
        if min_count > buffer_size:
            raise ValueError("min_count cannot exceed buffer_size")
        self.buffer_size, self.min_count, self.clip, self.per_prompt = buffer_size, min_count, clip, per_prompt
        self.buffers: dict[str, deque[float]] = {}

    def update(self, prompts: Sequence[str], rewards: Sequence[float] | np.ndarray) -> np.ndarray:
        """Add this batch's rewards to the buffers and return their advantages (same order)."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(prompts) != len(rewards):
            raise ValueError("prompts and rewards must have the same length")
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        advantages = (rewards - batch_mean) / batch_std
        if self.per_prompt:
            for prompt in dict.fromkeys(prompts):
                rows = np.asarray([p == prompt for p in prompts])
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
            "per_prompt": self.per_prompt,
            "buffers": {prompt: list(values) for prompt, values in self.buffers.items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> PerPromptStatTracker:
        tracker = cls(state["buffer_size"], state["min_count"], state["clip"], state["per_prompt"])
        tracker.buffers = {p: deque(v, maxlen=tracker.buffer_size) for p, v in state["buffers"].items()}
        return tracker

    def stats(self) -> dict[str, float]:
        """How many prompts are tracked and how many have enough history for their own statistics."""
        ready = sum(len(b) >= self.min_count for b in self.buffers.values())
        return {"prompts_tracked": float(len(self.buffers)), "prompts_with_own_stats": float(ready)}

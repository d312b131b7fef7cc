"""Turning a RewardModel row into a reward callable on this worker (imports torch: workers only)."""

from __future__ import annotations

import os

from core import plugins
from core.storage import artifact_directory
from rewards.models import RewardModel


def resolve_backbone(backbone: str) -> str:
    """A registered ``reward_backbone`` name (the sandbox registers ``sandbox``) → its checkpoint; anything else
    (hub id, folder) as given."""
    if backbone in plugins.names("reward_backbone"):
        return os.fspath(plugins.resolve("reward_backbone", backbone))
    return backbone


def reward_function_for(reward_model: RewardModel, *, device: str | None = None, batch_size: int = 64):
    """The trained model's folder (unpacked from its artifact) or, without one, the zero-shot backbone."""
    from rewards.scoring import RewardFunction

    if reward_model.artifact_id is not None:
        folder = artifact_directory(reward_model.artifact)
        return RewardFunction.from_directory(folder, device=device, batch_size=batch_size)
    return RewardFunction.zero_shot(resolve_backbone(reward_model.backbone), device=device, batch_size=batch_size)

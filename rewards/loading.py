"""Turning a RewardModel row into a reward callable on this worker (imports torch: workers only)."""

from __future__ import annotations

from core.storage import artifact_directory
from generators.sandbox import CLIP_PATH
from rewards.models import RewardModel
from rewards.run_configs import SANDBOX_BACKBONE


def resolve_backbone(backbone: str) -> str:
    """``sandbox`` → the bundled sandbox CLIP folder; anything else (hub id, folder) as given."""
    return str(CLIP_PATH) if backbone == SANDBOX_BACKBONE else backbone


def reward_function_for(reward_model: RewardModel, *, device: str | None = None, batch_size: int = 64):
    """The trained model's folder (unpacked from its artifact) or, without one, the zero-shot backbone."""
    from rewards.scoring import RewardFunction

    if reward_model.artifact_id is not None:
        folder = artifact_directory(reward_model.artifact)
        return RewardFunction.from_directory(folder, device=device, batch_size=batch_size)
    return RewardFunction.zero_shot(resolve_backbone(reward_model.backbone), device=device, batch_size=batch_size)

"""Every write to the finetune app's tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.models import Run
from finetune.models import FineTune
from generators.models import ModelVersion


def finetune_record(
    *,
    run: Run,
    parent: ModelVersion,
    version: ModelVersion,
    reward_model_id: int | None,
    oracle: str,
    summary: Mapping[str, Any],
    algorithm: str = "ddpo",
    dataset_id: int | None = None,
) -> FineTune:
    """Record what a finished fine-tuning run made: parent → new version, the reward it optimised (DDPO) or the
    dataset it learned from (Diffusion-DPO / KTO), its figures (the summary without the per-step history and the
    config, which the run keeps)."""
    return FineTune.objects.create(
        run=run,
        parent=parent,
        version=version,
        reward_model_id=reward_model_id,
        oracle=oracle,
        algorithm=algorithm,
        dataset_id=dataset_id,
        summary={key: value for key, value in summary.items() if key not in ("history", "config")},
    )

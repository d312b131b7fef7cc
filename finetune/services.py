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
) -> FineTune:
    """Record what a finished ``finetune`` run made: parent → new version, the reward it optimised, its figures
    (the summary without the per-epoch history and the config, which the run keeps)."""
    return FineTune.objects.create(
        run=run,
        parent=parent,
        version=version,
        reward_model_id=reward_model_id,
        oracle=oracle,
        summary={key: value for key, value in summary.items() if key not in ("history", "config")},
    )

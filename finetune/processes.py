"""What the trainers' processes agree on under ``accelerate``: cancel, averaged stats, the checkpoint to resume."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from core.jobs import JobContext, JobFailed

from . import checkpoint as ckpt


def stop_requested(ctx: JobContext, accelerator: Any) -> bool:
    """True on every process once the main one's context asks to stop (the others hold a null context)."""
    flag = torch.tensor([1.0 if ctx.should_stop() else 0.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="sum")
    return float(flag.item()) > 0


def mean_over_processes(accelerator: Any, stats: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the processes (the stats themselves with one process)."""
    if accelerator.num_processes == 1 or not stats:
        return stats
    keys = sorted(stats)
    tensor = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    tensor = accelerator.reduce(tensor, reduction="mean")
    return dict(zip(keys, tensor.cpu().tolist(), strict=True))


def load_shared_checkpoint(
    ctx: JobContext, accelerator: Any, fmt: str, config: Mapping[str, Any], resumable: set[str]
) -> dict[str, Any] | None:
    """The context's checkpoint (read by the main process, broadcast to the others), or None; a checkpoint made
    with another value of a field outside ``resumable`` is a :class:`JobFailed`."""
    data = ctx.load_checkpoint() if accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        holder = [data]
        broadcast_object_list(holder, from_process=0)
        data = holder[0]
    if data is None:
        return None
    state = ckpt.loads(data, fmt=fmt)
    changed = ckpt.config_mismatch(state["config"], dict(config), resumable)
    if changed:
        raise JobFailed(f"The checkpoint was made with a different {changed!r}; start a new run to change it.")
    return state

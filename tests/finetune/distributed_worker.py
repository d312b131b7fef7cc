"""Run by ``torchrun --nproc_per_node 2`` from test_ddpo_distributed.py: a tiny DDPO run on each process, then
every rank writes its adapter weights (``rank<N>.pt``) and the main process its result to the given folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from finetune.lora import lora_state_dict  # noqa: E402
from finetune.trainer import DDPOTrainer  # noqa: E402
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TINY, TRAIN_PROMPTS, RecordingContext, area  # noqa: E402


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ctx = RecordingContext()
    trainer = DDPOTrainer(PIPELINE, TINY, area, TRAIN_PROMPTS, EVAL_PROMPTS[:2], ctx, out / "adapter")
    result = trainer.train()
    rank = trainer.accelerator.process_index
    torch.save(lora_state_dict(trainer.parts.unet), out / f"rank{rank}.pt")
    if trainer.is_main:
        summary = {k: result.summary[k] for k in ("epochs", "eval_reward_before", "eval_reward_after")}
        summary["processes"] = trainer.accelerator.num_processes
        summary["checkpoints"] = ctx.checkpoints_saved
        summary["grid"] = "eval_grid.png" in ctx.artifacts
        (out / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

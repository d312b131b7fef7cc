"""Run by ``torchrun --nproc_per_node 2`` from test_preference_distributed.py: a tiny Diffusion-KTO run with gradient
accumulation on each process (the batch's reference point reduced over processes, no gradient sync on the first
micro-batch), then every rank writes its adapter weights (``rank<N>.pt``) and the main process its result."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from finetune.lora import lora_state_dict  # noqa: E402
from finetune.preference_data import build_examples  # noqa: E402
from finetune.preference_sandbox import Row  # noqa: E402
from finetune.preference_trainer import PreferenceTrainer  # noqa: E402
from tests.finetune.ddpo_support import EVAL_PROMPTS, PIPELINE, TRAIN_PROMPTS, RecordingContext  # noqa: E402

SETTINGS = {"algorithm": "diffusion_kto", "train_steps": 3, "batch_size": 4, "gradient_accumulation": 2,
            "checkpoint_every": 1, "eval_every": 0, "sample_steps": 2, "eval_images_per_prompt": 1,
            "grid_prompts": 1}  # fmt: skip


def _square(side: int) -> bytes:
    image = Image.new("RGB", (32, 32))
    image.paste((255, 255, 255), (0, 0, side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    votes = [Row(TRAIN_PROMPTS[i], _square(16 + i), _square(4 + i), 1.0, 0.0) for i in range(8)]
    ctx = RecordingContext()
    trainer = PreferenceTrainer(
        PIPELINE, SETTINGS, build_examples(votes, "diffusion_kto"), EVAL_PROMPTS[:1], ctx, out / "adapter"
    )
    result = trainer.train()
    rank = trainer.accelerator.process_index
    torch.save(lora_state_dict(trainer.parts.unet), out / f"rank{rank}.pt")
    if trainer.is_main:
        summary = {"steps": result.summary["steps"], "processes": trainer.accelerator.num_processes}
        summary["checkpoints"] = ctx.checkpoints_saved
        summary["grid"] = "eval_grid.png" in ctx.artifacts
        (out / "result.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Run a DDPO job from a JSON spec, in one process or under ``accelerate launch`` (one process per GPU).

    accelerate launch --num_processes 4 -m finetune.launch --spec /path/spec.json     # 4 GPUs
    accelerate launch --num_processes 2 --cpu -m finetune.launch --spec spec.json     # 2 CPU processes (gloo)
    python -m finetune.launch --spec spec.json                                        # one process

The spec (JSON)::

    {"pipeline": "/models/sd15",                       # folder or hub id of the base StableDiffusionPipeline
     "config": {...},                                  # DDPOConfig fields
     "train_prompts": [...], "eval_prompts": [...],
     "reward": {"target": "generators.sandbox.oracles:area_reward", "per_image": true},
     "gold_reward": null,                              # same form, optional
     "parent_lora": null,                              # diffusers LoRA folder to continue, optional
     "output_dir": "/runs/42/adapter",                 # the adapter is written here (main process)
     "work_dir": "/runs/42/job"}                       # FileJobContext folder, see below

A reward ``target`` is ``module:attribute``; with ``"factory": true`` the attribute is called with ``kwargs``
to build the reward callable (e.g. loading a reward model once per process), with ``"per_image": true`` it is a
``(prompt, image) -> float`` function. The platform side follows the run through :class:`FileJobContext`'s
folder: ``metrics.jsonl`` and ``progress.jsonl`` (appended), ``checkpoint.bin`` (replaced atomically; a new
launch with the same ``work_dir`` resumes from it), ``artifacts/``, and ``result.json`` at the end
(``{"status": "succeeded" | "cancelled" | "failed", ...}``). Creating ``work_dir/STOP`` asks for a cooperative
cancel. Exit codes: 0 succeeded, 3 cancelled, 2 failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.jobs import JobCancelled, JobFailed

from .reward import RewardFn, per_image


class FileJobContext:
    """A :class:`core.jobs.JobContext` backed by a folder (for a job running in its own processes)."""

    def __init__(self, work_dir: str | Path, run_id: int = 0, attempt: int = 1):
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id, self.attempt = run_id, attempt

    def _append(self, name: str, record: Mapping[str, Any]) -> None:
        with open(self.dir / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _replace(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)

    def report_progress(self, fraction: float, message: str = "") -> None:
        self._append("progress.jsonl", {"fraction": fraction, "message": message})

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        self._append("metrics.jsonl", {"step": step, "values": dict(values)})

    def should_stop(self) -> bool:
        return (self.dir / "STOP").exists()

    def save_checkpoint(self, payload: bytes) -> None:
        self._replace(self.dir / "checkpoint.bin", payload)

    def load_checkpoint(self) -> bytes | None:
        path = self.dir / "checkpoint.bin"
        return path.read_bytes() if path.exists() else None

    def save_artifact(self, name: str, data: bytes, kind: str, metadata: Mapping[str, Any] | None = None) -> None:
        self._replace(self.dir / "artifacts" / name, data)
        self._replace(self.dir / "artifacts" / f"{name}.json", json.dumps({"kind": kind, **(metadata or {})}).encode())


def resolve_reward(spec: Mapping[str, Any] | None) -> RewardFn | None:
    """Build a reward callable from ``{"target": "module:attr", "factory": bool, "kwargs": {}, "per_image": bool}``."""
    if not spec:
        return None
    module_name, _, attribute = str(spec["target"]).partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise JobFailed(f"Reward {spec['target']!r} cannot be imported: {exc}") from exc
    if spec.get("factory"):
        target = target(**spec.get("kwargs", {}))
    return per_image(target) if spec.get("per_image") else target


def run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run the job the spec describes; returns the ``result.json`` record (written by the main process)."""
    from .trainer import DDPOTrainer

    ctx = FileJobContext(spec["work_dir"])
    trainer = None
    try:
        trainer = DDPOTrainer(
            spec["pipeline"],
            spec.get("config"),
            resolve_reward(spec["reward"]),
            spec["train_prompts"],
            spec["eval_prompts"],
            ctx,
            spec["output_dir"],
            gold_reward_fn=resolve_reward(spec.get("gold_reward")),
            parent_lora=spec.get("parent_lora"),
        )
        result = trainer.train()
        record = {"status": "succeeded", "summary": result.summary}
    except JobCancelled as exc:
        record = {"status": "cancelled", "message": str(exc)}
    except (JobFailed, ValueError) as exc:
        record = {"status": "failed", "message": str(exc)}
    if trainer is None or trainer.is_main:
        (ctx.dir / "result.json").write_text(json.dumps(record, default=str))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="path of the JSON spec")
    args = parser.parse_args(argv)
    record = run_spec(json.loads(Path(args.spec).read_text()))
    return {"succeeded": 0, "cancelled": 3}.get(record["status"], 2)


if __name__ == "__main__":
    sys.exit(main())

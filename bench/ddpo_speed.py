"""DDPO speed: seconds per epoch of our trainer against trl 0.23.1's ``DDPOTrainer`` on identical settings, on
the sandbox model (32 samples × 10 DDIM steps per epoch, train batch 8, LoRA rank 4 on to_q/to_k/to_v/to_out.0,
the same learning rate and clip range, CFG 5, the area oracle as reward), measured in the same run.

    python bench/ddpo_speed.py                         # 25 epochs each, ours and trl alternating
    python bench/ddpo_speed.py --epochs 10 --rounds 2

trl is never a dependency of the project: it is installed (no dependencies of its own beyond pandas) into a
separate folder and put on ``sys.path`` only in trl's subprocess::

    .venv/bin/python -m pip install --no-deps --target var/bench-trl trl==0.23.1 pandas

Each measurement runs in a fresh subprocess (ABAB...). Seconds per epoch is the median over epochs after the first
(warm-up); evaluation, model loading and checkpoints are not timed. The reward gain is the mean training reward of
the last 5 epochs minus that of the first 5 (noisy: each epoch draws other prompts); the eval reward is the mean
area reward of deterministic samples (η = 0, 2 seeds) of the 24 sandbox eval prompts before and after training,
computed the same way for both trainers. Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRL_DIR = ROOT / "var" / "bench-trl"
LR, CLIP = 3e-2, 1e-2


def _prompts() -> list[str]:
    from generators.sandbox_catalog import sandbox_prompts

    return [p["text"] for p in sandbox_prompts()["train"]]


def eval_reward(parts) -> float:
    """Mean area reward of deterministic samples (η = 0, seeds 0 and 1) of every sandbox eval prompt."""
    from finetune.sampling import sample
    from generators.sandbox.oracles import area_reward
    from generators.sandbox_catalog import sandbox_prompts

    prompts = [p["text"] for p in sandbox_prompts()["eval"] for _ in range(2)]
    pixels, _ = sample(parts, prompts, [k % 2 for k in range(len(prompts))], 10, 5.0, eta=0.0)
    return sum(area_reward(p, im) for p, im in zip(prompts, pixels, strict=True)) / len(prompts)


def measure_ours(args) -> dict:
    from finetune.reward import per_image
    from finetune.trainer import DDPOTrainer, NullContext
    from generators.sandbox import PIPELINE_PATH
    from generators.sandbox.oracles import area_reward
    from generators.sandbox_catalog import sandbox_prompts

    config = {
        "epochs": args.epochs,
        "samples_per_epoch": 32,
        "sample_batch_size": 16,
        "train_batch_size": 8,
        "steps": 10,
        "lora_rank": 4,
        "learning_rate": LR,
        "clip_range": CLIP,
        "inner_epochs": 1,  # trl's default, and batch z-scores as trl's (our defaults differ: see finetune/config.py)
        "advantage_stats": "batch",
        "eval_every": 0,
        "seed": args.seed,
    }
    eval_prompts = [p["text"] for p in sandbox_prompts()["eval"]][:1]  # evaluation is not timed; keep it short
    trainer = DDPOTrainer(str(PIPELINE_PATH), config, per_image(area_reward), _prompts(), eval_prompts, NullContext())
    before = eval_reward(trainer.parts)
    history = trainer.train().summary["history"]
    seconds, rewards = [h["seconds_epoch"] for h in history], [h["reward_mean"] for h in history]
    after = eval_reward(trainer.parts)
    return {"epoch_seconds": seconds, "rewards": rewards, "eval_before": before, "eval_after": after}


def measure_trl(args) -> dict:
    import random

    import numpy as np
    import torch

    sys.path.insert(0, str(TRL_DIR))
    from trl import DDPOConfig, DDPOTrainer, DefaultDDPOStableDiffusionPipeline

    from generators.sandbox import PIPELINE_PATH
    from generators.sandbox.oracles import area_reward

    prompts, rng = _prompts(), random.Random(args.seed)

    def prompt_fn():
        return rng.choice(prompts), {}

    def reward_fn(images, batch_prompts, metadata):
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return np.array([area_reward(p, im) for p, im in zip(batch_prompts, pixels, strict=True)]), {}

    config = DDPOConfig(
        num_epochs=args.epochs,
        sample_num_steps=10,
        sample_batch_size=16,
        sample_num_batches_per_epoch=2,
        sample_guidance_scale=5.0,
        train_batch_size=8,
        train_learning_rate=LR,
        train_clip_range=CLIP,
        mixed_precision="no",
        log_with=None,
        seed=args.seed,
        save_freq=10**6,
        project_kwargs={"project_dir": str(ROOT / "var" / "bench-trl-runs")},
    )
    from accelerate import PartialState

    PartialState(cpu=True)  # trl's pipeline logs through accelerate before its trainer creates the state
    pipeline = DefaultDDPOStableDiffusionPipeline(str(PIPELINE_PATH), use_lora=True)
    trainer = DDPOTrainer(config, reward_fn, prompt_fn, pipeline)
    rewards, seconds, global_step = [], [], 0
    original = trainer.compute_rewards

    def recording(pairs, is_async=False):
        out = list(original(pairs, is_async))
        rewards.append(float(torch.cat(list(out[0])).mean()))
        return iter(out)

    trainer.compute_rewards = recording
    from finetune.sampling import Components

    sd = pipeline.sd_pipeline  # the parts as they are: from_pipeline would freeze trl's LoRA weights
    parts = Components(sd.tokenizer, sd.text_encoder, sd.unet, sd.vae, sd.scheduler, torch.device("cpu"))
    before = eval_reward(parts)
    for epoch in range(args.epochs):
        began = time.perf_counter()
        global_step = trainer.step(epoch, global_step)
        seconds.append(time.perf_counter() - began)
    return {"epoch_seconds": seconds, "rewards": rewards, "eval_before": before, "eval_after": eval_reward(parts)}


def child(variant: str, args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = (measure_ours if variant == "ours" else measure_trl)(args)
    print(json.dumps(result))


def _run(variant: str, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs), "--seed", str(args.seed)]
    command += ["--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    seconds = [s for run in runs for s in run["epoch_seconds"][1:]]
    gains = [statistics.mean(run["rewards"][-5:]) - statistics.mean(run["rewards"][:5]) for run in runs]
    return {
        "seconds_per_epoch": statistics.median(seconds),
        "train_reward_gain": statistics.mean(gains),
        "eval_before": statistics.mean(run["eval_before"] for run in runs),
        "eval_after": statistics.mean(run["eval_after"] for run in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["ours", "trl"])
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args)
        return
    if not (TRL_DIR / "trl").is_dir():
        raise SystemExit(f"trl is not installed in {TRL_DIR}; see this file's docstring.")
    runs: dict[str, list[dict]] = {"ours": [], "trl": []}
    for _ in range(args.rounds):
        for variant in ("ours", "trl"):
            runs[variant].append(_run(variant, args))
    ours, trl = _summary(runs["ours"]), _summary(runs["trl"])
    print(f"{'trainer':8} {'s/epoch':>8} {'train gain':>11} {'eval before':>12} {'eval after':>11}")
    for name, row in (("ours", ours), ("trl", trl)):
        print(
            f"{name:8} {row['seconds_per_epoch']:8.2f} {row['train_reward_gain']:11.3f} "
            f"{row['eval_before']:12.3f} {row['eval_after']:11.3f}"
        )
    speedup = trl["seconds_per_epoch"] / ours["seconds_per_epoch"]
    print(f"speed-up: {speedup:.2f}x")
    print(json.dumps({"ours": ours, "trl": trl, "speedup": speedup, "epochs": args.epochs, "rounds": args.rounds}))


if __name__ == "__main__":
    main()

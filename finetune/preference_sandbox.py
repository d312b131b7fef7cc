"""Diffusion-DPO / Diffusion-KTO on the sandbox from simulated votes, judged by the voters' own oracle. No Django.

    python -m finetune.preference_sandbox --oracle area --algorithm diffusion_dpo --seeds 0 1 2
    python -m finetune.preference_sandbox --oracle centred --algorithm diffusion_kto --set train_steps=500

The world is ``rlhf_cycle``'s before it asked one vote per pair: the 72 sandbox train prompts × 8 images (20 DDIM steps,
guidance 5) → 288 same-prompt pairs × 3 votes by annotators who follow a registered oracle (a tie within 0.05, 10% of
the votes flipped); then the trainer (``finetune.preference_trainer``, its defaults unless ``--set key=value``) tunes a
LoRA on the votes. The judgement is the cycle's: the 24 eval prompts × 4 seeds sampled (η = 0) by the base and the tuned
model, and the share of decided (prompt, seed) pairs (oracle rewards 0.05 or more apart) where the tuned image is the
better. Prints one line per seed and a JSON line last. (The platform's version of this, through campaigns, runs and the
blind arena, is ``manage.py rlhf_cycle --method dpo|kto``.)
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from core.jobs import NullJobContext
from core.plugins import Plugin
from generators.sandbox import DEFAULT_GUIDANCE, DEFAULT_STEPS, PIPELINE_PATH
from generators.sandbox.registration import ORACLES as SANDBOX_ORACLES
from generators.sandbox_catalog import sandbox_prompts

from .preference_data import build_examples
from .preference_trainer import PreferenceTrainer

IMAGES_PER_PROMPT, VOTES_PER_PAIR, FLIP, TIE_MARGIN, EVAL_SEEDS = 8, 3, 0.1, 0.05, 4


@dataclass
class Row:
    """A Pick-a-Pic-shaped vote (the attributes ``build_examples`` reads)."""

    caption: str
    jpg_0: bytes
    jpg_1: bytes
    label_0: float
    label_1: float
    both_bad: bool = False


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def oracle(name: str):
    return Plugin("oracle", name, SANDBOX_ORACLES[name], "built-in").load()


def simulated_votes(oracle_name: str, seed: int, collect_seed: int = 0) -> list[Row]:
    """The cycle's collect campaign voted by noisy followers of the oracle (see the module docstring)."""
    from generators.sandbox.evaluate import generate, load_pipeline

    judge, rng = oracle(oracle_name), np.random.default_rng(seed)
    prompts = [p["text"] for p in sandbox_prompts()["train"]]
    flat = [p for p in prompts for _ in range(IMAGES_PER_PROMPT)]
    seeds = [collect_seed * 1_000_000 + i for i in range(len(flat))]
    pixels = generate(load_pipeline(PIPELINE_PATH), flat, seeds, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE)
    rows = []
    for start in range(0, len(flat), 2):
        prompt = flat[start]
        a, b = pixels[start], pixels[start + 1]
        r_a, r_b = judge(prompt, Image.fromarray(a)), judge(prompt, Image.fromarray(b))
        for _ in range(VOTES_PER_PAIR):
            label = 0.5 if abs(r_a - r_b) < TIE_MARGIN else (1.0 if r_a > r_b else 0.0)
            if rng.random() < FLIP:
                label = float(rng.integers(2)) if label == 0.5 else 1.0 - label
            rows.append(Row(prompt, _png(a), _png(b), label, 1.0 - label))
    return rows


def judge_versions(trainer: PreferenceTrainer, oracle_name: str) -> dict[str, Any]:
    """Base (adapter off) vs tuned images of the eval prompts × 4 seeds, judged by the oracle."""
    from .lora import adapter_disabled

    judge = oracle(oracle_name)
    prompts = [p["text"] for p in sandbox_prompts()["eval"] for _ in range(EVAL_SEEDS)]
    seeds = [2_000_000 + k for _ in range(len(prompts) // EVAL_SEEDS) for k in range(EVAL_SEEDS)]
    tuned = trainer.sample_eval(prompts, seeds)
    with adapter_disabled(trainer.parts.unet):
        base = trainer.sample_eval(prompts, seeds)
    pairs = [
        (judge(p, Image.fromarray(b)), judge(p, Image.fromarray(t)))
        for p, b, t in zip(prompts, base, tuned, strict=True)
    ]
    decided = [(b, t) for b, t in pairs if abs(t - b) >= TIE_MARGIN]
    better = sum(t > b for b, t in decided)
    return {
        "oracle_before": float(np.mean([b for b, _ in pairs])),
        "oracle_after": float(np.mean([t for _, t in pairs])),
        "decided": len(decided),
        "tuned_better": better,
        "tuned_better_share": better / len(decided) if decided else None,
    }


def run_seed(oracle_name: str, algorithm: str, seed: int, overrides: dict[str, Any], rows: list[Row]) -> dict:
    examples = build_examples(rows, algorithm, ties=overrides.get("ties", "drop"))
    config = {**overrides, "algorithm": algorithm, "seed": seed}
    eval_prompts = [p["text"] for p in sandbox_prompts()["eval"]]
    began, cpu = time.perf_counter(), time.process_time()
    trainer = PreferenceTrainer(str(PIPELINE_PATH), config, examples, eval_prompts, NullJobContext())
    summary = trainer.train().summary
    minutes, cpu_minutes = (time.perf_counter() - began) / 60, (time.process_time() - cpu) / 60
    return {
        "oracle": oracle_name,
        "algorithm": algorithm,
        "seed": seed,
        "examples": summary["examples"],
        "final_implicit_accuracy": summary["final_implicit_accuracy"],
        "minutes": minutes,
        "cpu_minutes": cpu_minutes,
        **judge_versions(trainer, oracle_name),
    }


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracle", choices=sorted(SANDBOX_ORACLES), default="area")
    parser.add_argument("--algorithm", choices=["diffusion_dpo", "diffusion_kto"], default="diffusion_dpo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="trainer setting")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {key: _value(value) for key, _, value in (item.partition("=") for item in args.set)}
    results = []
    for seed in args.seeds:
        row = run_seed(args.oracle, args.algorithm, seed, overrides, simulated_votes(args.oracle, seed))
        print(
            f"seed {seed}: {args.algorithm} on {args.oracle}: oracle {row['oracle_before']:.3f} → "
            f"{row['oracle_after']:.3f}, tuned better in {row['tuned_better']}/{row['decided']} decided "
            f"({row['tuned_better_share'] or 0:.2f}), {row['minutes']:.1f} min ({row['cpu_minutes']:.1f} CPU min)",
            flush=True,
        )
        results.append(row)
    print(json.dumps({"oracle": args.oracle, "algorithm": args.algorithm, "overrides": overrides, "seeds": results}))


if __name__ == "__main__":
    main()

"""Sandbox acceptance experiment: can the reward model learn a preference that the captions do not describe?

Images come from the real sandbox pipeline (what the platform scores). Pairs are two images of the same prompt;
simulated annotators follow a registered pixel oracle (``--oracle``; default ``area``: the larger shape wins, a tie
when the rewards are within ``tie_margin``) and 10% of their votes are flipped.
Some pairs get several votes so that the human ceiling can be
computed. The reward model trains on prompt-disjoint splits and is compared on held-out decisive pairs with the
zero-shot CLIP and with a perfect oracle follower (the best achievable given the noise). No Django.

    python -m rewards.sandbox_experiment            # prints a report, one-line JSON last
    python -m rewards.sandbox_experiment --oracle centred --max-votes 1000 --head attention
    python -m rewards.sandbox_experiment --compare --oracles area,centred,even,crisp --max-votes 1000

``--max-votes N`` keeps at most N training + validation votes (a random subset of each split, in proportion); the
test split is not cut. ``--compare`` prints a table of every reward model option (head kinds, CLIP fine-tunes,
the search) on every oracle. ``--cache DIR`` keeps the generated images between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from typing import Any

import numpy as np
import torch

from generators.sandbox import CLIP_PATH, DEFAULT_GUIDANCE, DEFAULT_STEPS, PIPELINE_PATH
from generators.sandbox.dataset import all_captions
from generators.sandbox.oracles import area_reward

from .config import HEAD_KINDS
from .data import PreferencePair, split_by_prompt
from .metrics import decisive_accuracy, human_ceiling, pair_probabilities, votes_by_pair
from .train import MemoryCallbacks, RewardTrainConfig, train_reward_model

__all__ = ["ExperimentConfig", "generate_sandbox_images", "run_experiment", "simulate_votes"]

Oracle = Callable[[str, Any], float]


@dataclass
class ExperimentConfig:
    images_per_prompt: int = 6  # pairs per prompt: C(n, 2) = 15, so 1,440 pairs on the 96 sandbox prompts
    diffusion_steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    extra_vote_fraction: float = 0.5  # this share of pairs gets `extra_votes` more votes (for the human ceiling)
    extra_votes: int = 2
    flip_probability: float = 0.1
    tie_margin: float = 0.05  # oracle rewards closer than this are a tie
    annotators: int = 20
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.15
    oracle: str = "area"  # a registered pixel oracle (core.plugins kind "oracle")
    max_votes: int | None = None  # at most this many training + validation votes (None: all)


def generate_sandbox_images(
    prompts: list[str],
    per_prompt: int,
    steps: int,
    guidance: float,
    seed: int = 0,
    batch_size: int = 64,
    cache: str | None = None,
) -> dict[str, list[np.ndarray]]:
    """``per_prompt`` images of each prompt from the saved sandbox pipeline, seeded per image (kept in the
    folder ``cache`` when given, and read back from there next time)."""
    from generators.sandbox.evaluate import generate, load_pipeline

    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, f"images-{per_prompt}-{seed}-{steps}-{guidance:g}.npz")
        if os.path.exists(path):
            saved = np.load(path)
            if list(saved["prompts"]) == list(prompts):
                return {p: list(saved["images"][i]) for i, p in enumerate(prompts)}

    pipe = load_pipeline(PIPELINE_PATH)
    flat = [p for p in prompts for _ in range(per_prompt)]
    seeds = [seed * 1_000_000 + i for i in range(len(flat))]
    images = generate(pipe, flat, seeds, steps=steps, guidance=guidance, batch_size=batch_size)
    out: dict[str, list[np.ndarray]] = {p: [] for p in prompts}
    for prompt, image in zip(flat, images, strict=True):
        out[prompt].append(image)
    if path:
        np.savez_compressed(path, prompts=np.asarray(prompts), images=np.stack([np.stack(out[p]) for p in prompts]))
    return out


def resolve_oracle(name: str) -> Oracle:
    """A registered pixel oracle by name (the sandbox registration loaded, as the platform does)."""
    from core import plugins

    plugins.load_registrations(["generators.sandbox.registration"])
    if name not in plugins.names("oracle"):
        raise ValueError(f"unknown oracle {name!r} (registered: {', '.join(plugins.names('oracle'))})")
    return plugins.resolve("oracle", name)


def cap_votes(splits: Any, max_votes: int | None, seed: int) -> Any:
    """At most ``max_votes`` training + validation votes: a seeded random subset of each, in proportion."""
    if max_votes is None or len(splits.train) + len(splits.val) <= max_votes:
        return splits
    total = len(splits.train) + len(splits.val)
    n_val = max(1, round(max_votes * len(splits.val) / total))
    rng = random.Random(seed)
    return splits._replace(train=rng.sample(splits.train, max_votes - n_val), val=rng.sample(splits.val, n_val))


def _oracle_label(r_a: float, r_b: float, margin: float) -> float:
    """label_a of a perfect oracle follower: 1, 0 or 0.5 (tie within the margin)."""
    return 0.5 if abs(r_a - r_b) < margin else (1.0 if r_a > r_b else 0.0)


def simulate_votes(
    images: dict[str, list[np.ndarray]], config: ExperimentConfig, oracle: Oracle = area_reward
) -> tuple[list[PreferencePair], dict[str, tuple[float, float]]]:
    """Noisy oracle votes on every within-prompt pair; returns the votes and each pair's oracle rewards."""
    rng = np.random.default_rng(config.seed)
    votes, rewards = [], {}
    for prompt, prompt_images in images.items():
        scores = [oracle(prompt, image) for image in prompt_images]
        for i, j in combinations(range(len(prompt_images)), 2):
            if rng.random() < 0.5:  # which image is "a" is random, as the platform's sides are
                i, j = j, i
            key = f"{prompt}#{i}-{j}"
            rewards[key] = (scores[i], scores[j])
            n_votes = 1 + (config.extra_votes if rng.random() < config.extra_vote_fraction else 0)
            voters = rng.choice(config.annotators, size=n_votes, replace=False)
            for voter in voters:
                label = _oracle_label(scores[i], scores[j], config.tie_margin)
                if rng.random() < config.flip_probability:
                    label = float(rng.integers(2)) if label == 0.5 else 1.0 - label
                votes.append(
                    PreferencePair(prompt, prompt_images[i], prompt_images[j], label, 1.0 - label, f"sim-{voter}", key)
                )
    return votes, rewards


def oracle_probabilities(
    pairs: list[PreferencePair], rewards: dict[str, tuple[float, float]], margin: float
) -> np.ndarray:
    """A perfect oracle follower's P(a wins): 1, 0, or 0.5 for pairs it calls a tie."""
    labels = [_oracle_label(*rewards[p.pair_key], margin) for p in pairs]
    return pair_probabilities(np.asarray(labels) * 40.0, np.full(len(labels), 20.0))


def run_experiment(
    config: ExperimentConfig | None = None,
    train_config: RewardTrainConfig | None = None,
    *,
    threads: int | None = 1,
    verbose: bool = False,
    output_dir: str | None = None,
    cache: str | None = None,
) -> dict[str, Any]:
    """Generate, vote, split, train, evaluate. Returns the report dict (JSON-safe).

    ``output_dir``: where the best reward model is saved (``RewardModel.save``), for use elsewhere. ``cache``: a
    folder keeping the generated images between runs.

    ``threads``: torch intra-op threads for the run (restored after). The sandbox models are so small that one
    thread is about as fast as two on an idle 2-core machine and several times faster on a busy one.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run(
            config or ExperimentConfig(),
            train_config or RewardTrainConfig(backbone=str(CLIP_PATH)),
            verbose,
            output_dir,
            cache,
        )
    finally:
        torch.set_num_threads(previous_threads)


@dataclass
class World:
    """One experiment's data: images, votes (capped), prompt-disjoint splits, the oracle's rewards per pair."""

    config: ExperimentConfig
    prompts: list[str]
    images: dict[str, list[np.ndarray]]
    votes: list[PreferencePair]
    rewards: dict[str, tuple[float, float]]
    splits: Any
    generation_seconds: float

    @property
    def achievable(self) -> float:
        """A perfect oracle follower's decisive accuracy on the test votes."""
        labels = [p.label_a for p in self.splits.test]
        return decisive_accuracy(oracle_probabilities(self.splits.test, self.rewards, self.config.tie_margin), labels)


def build_world(
    config: ExperimentConfig, cache: str | None = None, images: dict[str, list[np.ndarray]] | None = None
) -> World:
    """Generate (or reuse ``images``), vote with ``config.oracle``, split by prompt, cap the votes."""
    began = time.perf_counter()
    prompts = all_captions(with_sizes=True)
    if images is None:
        images = generate_sandbox_images(
            prompts, config.images_per_prompt, config.diffusion_steps, config.guidance, config.seed, cache=cache
        )
    generation_seconds = time.perf_counter() - began
    votes, rewards = simulate_votes(images, config, resolve_oracle(config.oracle))
    splits = split_by_prompt(
        votes, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed
    )
    splits = cap_votes(splits, config.max_votes, config.seed)
    return World(config, prompts, images, votes, rewards, splits, generation_seconds)


def _run(
    config: ExperimentConfig,
    train_config: RewardTrainConfig,
    verbose: bool,
    output_dir: str | None = None,
    cache: str | None = None,
    world: World | None = None,
) -> dict[str, Any]:
    cpu_began, wall_began = time.process_time(), time.perf_counter()
    world = world or build_world(config, cache)
    prompts, images, votes, rewards, splits = world.prompts, world.images, world.votes, world.rewards, world.splits
    generation_seconds = world.generation_seconds
    if verbose:
        print(
            f"{len(votes)} votes ({len(splits.train)} train, {len(splits.val)} val, {len(splits.test)} test), "
            f"{len(rewards)} pairs, {len(prompts)} prompts, oracle {config.oracle}; "
            f"generation {generation_seconds:.1f}s"
        )

    cpu_train, wall_train = time.process_time(), time.perf_counter()
    callbacks = MemoryCallbacks()
    result = train_reward_model(train_config, splits.train, splits.val, splits.test, callbacks, output_dir=output_dir)
    train_cpu_seconds = time.process_time() - cpu_train
    train_wall_seconds = time.perf_counter() - wall_train

    achievable = world.achievable
    trained = result["test"]["decisive_accuracy"]
    baseline = result["baseline"]["test"]["decisive_accuracy"]
    report = {
        "votes": len(votes),
        "pairs": len(rewards),
        "prompts": len(prompts),
        "images": sum(len(v) for v in images.values()),
        "split_votes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "test_decisive_votes": result["test"]["decisive_pairs"],
        "trained_decisive_accuracy": trained,
        "baseline_decisive_accuracy": baseline,
        "achievable_decisive_accuracy": achievable,
        "fraction_of_achievable": trained / achievable,
        "points_over_baseline": 100.0 * (trained - baseline),
        "trained_tie_aware_accuracy": result["test"]["accuracy"],
        "baseline_tie_aware_accuracy": result["baseline"]["test"]["accuracy"],
        "test_log_loss": result["test"]["log_loss"],
        "test_ece": result["test"]["ece"],
        "threshold": result["threshold"],
        "best_step": result["best_step"],
        "val_accuracy": result["val_accuracy"],
        "human_ceiling_all_votes": human_ceiling(votes_by_pair(votes)),
        "steps": result["steps"],
        "pairs_per_second": result["pairs_per_second"],
        "generation_seconds": generation_seconds,
        "train_wall_seconds": train_wall_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "total_cpu_seconds": time.process_time() - cpu_began,
        "total_wall_seconds": time.perf_counter() - wall_began,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "experiment": asdict(config),
        "train_config": train_config.to_dict(),
        "chosen": result.get("chosen"),
        "candidates": result.get("candidates"),
        "temperature": result.get("temperature"),
    }
    report["passed"] = bool(report["fraction_of_achievable"] >= 0.9 and report["points_over_baseline"] >= 15)
    return report


# The options a comparison tries: name → RewardTrainConfig changes.
OPTIONS: dict[str, dict[str, Any]] = {
    "finetune-whole": {"head": "none", "trainable_layers": None},
    "finetune-last1": {"head": "none", "trainable_layers": 1},
    **{kind: {"head": kind} for kind in HEAD_KINDS},
    "search": {"search": True},
    "search-heads": {"search": True, "search_grid": "heads"},
}


def compare_options(
    oracles: list[str],
    options: list[str],
    config: ExperimentConfig,
    train_config: RewardTrainConfig,
    *,
    cache: str | None = None,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """One row per (oracle, option): held-out decisive accuracy, its share of achievable, zero-shot, seconds."""
    rows = []
    images = None
    for oracle in oracles:
        world = build_world(replace(config, oracle=oracle), cache, images)
        images = world.images
        for option in options:
            settings = replace(train_config, **OPTIONS[option])
            report = _run(world.config, settings, False, world=world)
            row = {
                "oracle": oracle,
                "option": option,
                "chosen": report.get("chosen"),
                "train_votes": report["split_votes"]["train"],
                "val_votes": report["split_votes"]["val"],
                "test_decisive_votes": report["test_decisive_votes"],
                "decisive_accuracy": report["trained_decisive_accuracy"],
                "fraction_of_achievable": report["fraction_of_achievable"],
                "zero_shot_fraction": report["baseline_decisive_accuracy"] / report["achievable_decisive_accuracy"],
                "achievable": report["achievable_decisive_accuracy"],
                "seconds": report["train_wall_seconds"],
            }
            rows.append(row)
            if verbose:
                print(json.dumps(row), flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`compare_options` rows."""
    lines = [
        "| oracle | option | held-out decisive accuracy | share of achievable | zero-shot share | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        option = row["option"] + (f" ({row['chosen']})" if row.get("chosen") else "")
        lines.append(
            f"| {row['oracle']} | {option} | {row['decisive_accuracy']:.3f} | {row['fraction_of_achievable']:.2f} | "
            f"{row['zero_shot_fraction']:.2f} | {row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-per-prompt", type=int, default=ExperimentConfig.images_per_prompt)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle", default=ExperimentConfig.oracle, help="a registered pixel oracle")
    parser.add_argument("--max-votes", type=int, default=None, help="at most this many train + validation votes")
    parser.add_argument("--head", default=None, help=f"none, {', '.join(HEAD_KINDS)} (default: the config's)")
    parser.add_argument("--search", action="store_true", help="try the grid and keep the best by validation")
    parser.add_argument("--ensemble-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="fine-tune steps (default: the config's)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--trainable-layers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    parser.add_argument("--cache", default=None, help="a folder keeping the generated images between runs")
    parser.add_argument("--compare", action="store_true", help="a table of every option on every --oracles")
    parser.add_argument("--oracles", default="area,centred,balanced,high")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"of {', '.join(OPTIONS)}")
    parser.add_argument("--json", default=None, help="write the comparison rows here")
    args = parser.parse_args(argv)
    config = ExperimentConfig(
        images_per_prompt=args.images_per_prompt, seed=args.seed, oracle=args.oracle, max_votes=args.max_votes
    )
    overrides = {
        "max_steps": args.steps,
        "lr": args.lr,
        "trainable_layers": args.trainable_layers,
        "seed": args.seed,
        "head": args.head,
        "search": args.search or None,
        "ensemble_size": args.ensemble_size,
    }
    train_config = replace(
        RewardTrainConfig(backbone=str(CLIP_PATH)), **{k: v for k, v in overrides.items() if v is not None}
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        options = args.options.split(",")
        unknown = [o for o in options if o not in OPTIONS]
        if unknown:
            parser.error(f"unknown option(s) {unknown}: choose from {', '.join(OPTIONS)}")
        rows = compare_options(args.oracles.split(","), options, config, train_config, cache=args.cache, verbose=True)
        print(format_table(rows))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=1)
        return
    report = run_experiment(config, train_config, threads=args.threads or None, verbose=True, cache=args.cache)
    for key in (
        "votes",
        "test_decisive_votes",
        "trained_decisive_accuracy",
        "baseline_decisive_accuracy",
        "achievable_decisive_accuracy",
        "fraction_of_achievable",
        "points_over_baseline",
        "human_ceiling_all_votes",
        "train_cpu_seconds",
        "total_cpu_seconds",
        "passed",
    ):
        print(f"{key:>30}: {report[key]}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

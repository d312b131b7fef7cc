"""How a heads search should choose: by the validation split or by k-fold cross-validation over prompts.

    python bench/head_selection.py                                  # 4 oracles x 3 seeds, 864 votes (a cycle's)
    python bench/head_selection.py --oracles centred --seeds 0 --max-votes 1000 --json out.json

The world of ``rewards.sandbox_experiment`` (576 sandbox images, simulated votes with 10% flipped, prompt-disjoint
splits), capped at ``--max-votes`` training + validation votes as ``rlhf_cycle`` collects them. Each (oracle, seed)
runs one heads search (``search_grid`` heads) with every candidate fitted on the training split and measured on
validation and test *and* cross-validated over the training and validation pairs (``evaluate_all``), so both ways
of choosing are judged on the same fits. Prints, per row, what each rule picks and the pick's held-out decisive
accuracy as a share of the achievable (a perfect oracle follower's), next to the best candidate in hindsight.
One torch thread by default. Images are cached under ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.sandbox import CLIP_PATH  # noqa: E402
from rewards.config import RewardTrainConfig  # noqa: E402
from rewards.features import FeatureCache  # noqa: E402
from rewards.head_train import search_reward_models  # noqa: E402
from rewards.sandbox_experiment import ExperimentConfig, build_world  # noqa: E402

RULES = {
    "validation": lambda r: (r["val_accuracy"], -r["val_log_loss"]),
    "cross_validation": lambda r: (r["cv_accuracy"], -r["cv_log_loss"]),
}


def run_one(oracle: str, seed: int, max_votes: int, folds: int, cache: str | None, features: FeatureCache) -> dict:
    """One heads search on one world; both rules' picks with their held-out share of achievable."""
    world = build_world(ExperimentConfig(oracle=oracle, seed=seed, max_votes=max_votes), cache)
    config = RewardTrainConfig(
        backbone=str(CLIP_PATH), search=True, search_grid="heads", search_folds=folds, seed=seed, device="cpu"
    )
    began = time.perf_counter()
    splits = world.splits
    result = search_reward_models(config, splits.train, splits.val, splits.test, features=features, evaluate_all=True)
    achievable = world.achievable
    share = {r["name"]: r["test_decisive_accuracy"] / achievable for r in result["candidates"]}
    row = {
        "oracle": oracle,
        "seed": seed,
        "votes": len(splits.train) + len(splits.val),
        "val_votes": len(splits.val),
        "achievable": achievable,
        "zero_shot_share": result["baseline"]["test"]["decisive_accuracy"] / achievable,
        "best": max(share, key=share.get),
        "best_share": max(share.values()),
        "seconds": time.perf_counter() - began,
        "candidates": result["candidates"],
    }
    for rule, key in RULES.items():
        pick = max(result["candidates"], key=key)["name"]
        row[rule] = {"pick": pick, "share": share[pick]}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oracles", default="area,centred,balanced,high")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-votes", type=int, default=864)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="keep the generated images in this folder between runs")
    parser.add_argument("--json", help="write every row (with every candidate's figures) here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    features = FeatureCache(str(CLIP_PATH), device="cpu")
    rows = []
    print("| oracle | seed | validation pick (share) | cross-validation pick (share) | best (share) | zero-shot | s |")
    print("| --- | ---: | --- | --- | --- | ---: | ---: |")
    for oracle in args.oracles.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run_one(oracle, seed, args.max_votes, args.folds, args.cache, features)
            rows.append(row)
            v, c = row["validation"], row["cross_validation"]
            print(
                f"| {oracle} | {seed} | {v['pick']} ({v['share']:.3f}) | {c['pick']} ({c['share']:.3f}) | "
                f"{row['best']} ({row['best_share']:.3f}) | {row['zero_shot_share']:.3f} | {row['seconds']:.0f} |",
                flush=True,
            )
    for rule in RULES:
        shares = [row[rule]["share"] for row in rows]
        print(f"{rule}: mean share {sum(shares) / len(shares):.3f}, worst {min(shares):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

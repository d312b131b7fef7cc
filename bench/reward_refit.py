"""Does refitting a heads search's winner on training + validation help? Both ways on one platform's votes.

    python bench/reward_refit.py --run 2 --seeds 0,1,2,3,4           # a reward_train run of this database
    python bench/reward_refit.py --run 2 --run 6 --seeds 0,1,2 --json refit.json

Run on the platform's database (``PLATFORM_VAR_DIR`` / ``DATABASE_URL`` as for ``manage.py``). For each named
``reward_train`` run it reads the run's votes and settings, and for each split seed runs the heads search twice on
the same prompt-disjoint split: ``search_refit`` off (the winner fitted on the training split, its temperature and
tie threshold from validation) and on (fitted on training + validation, temperature out-of-bag, threshold from the
cross-validation's pooled out-of-fold predictions). Prints the pick, the held-out test accuracy (tie-aware, as the
run reports it) and decisive accuracy of each, beside zero-shot CLIP on the same test. The CLIP features are
computed once per run. A search takes about a minute of one core on the cycle's 864 votes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from core.models import Run  # noqa: E402
from rewards.config import RewardTrainConfig  # noqa: E402
from rewards.data import pairs_from_pickapic, split_by_prompt  # noqa: E402
from rewards.executors import training_rows  # noqa: E402
from rewards.features import FeatureCache  # noqa: E402
from rewards.head_train import search_reward_models  # noqa: E402
from rewards.loading import resolve_backbone  # noqa: E402
from rewards.run_configs import TRAINING_FIELDS  # noqa: E402


def run_votes(run: Run) -> tuple[list, RewardTrainConfig]:
    """The preference pairs of ``run``'s votes and its training settings (a heads search), read once per run."""
    config = run.config
    _, rows = training_rows(run)
    pairs = pairs_from_pickapic(rows, both_bad_as_tie=config["both_bad_as_tie"])
    settings = {name: config[name] for name in TRAINING_FIELDS if name in config}
    train_config = RewardTrainConfig.from_dict({**settings, "backbone": resolve_backbone(config["backbone"])})
    return pairs, dataclasses.replace(train_config, search=True, search_grid="heads")


def compare(run: Run, pairs: list, train_config: RewardTrainConfig, seed: int, features: FeatureCache) -> dict:
    """One split seed of ``run``'s votes: the search without and with the refit."""
    config = run.config
    splits = split_by_prompt(
        pairs, val_fraction=config["val_fraction"], test_fraction=config["test_fraction"], seed=seed
    )
    row: dict = {"run": run.pk, "seed": seed, "test_pairs": len(splits.test)}
    for refit in (False, True):
        result = search_reward_models(
            dataclasses.replace(train_config, seed=seed, search_refit=refit),
            splits.train,
            splits.val,
            splits.test,
            features=features,
        )
        row["zero_shot"] = result["baseline_test_accuracy"]
        row["refit" if refit else "train_only"] = {
            "chosen": result["chosen"],
            "test_accuracy": result["test_accuracy"],
            "test_decisive_accuracy": result["test"]["decisive_accuracy"],
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=int, action="append", required=True, help="a reward_train run id (repeatable)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", help="write every row here")
    args = parser.parse_args(argv)
    rows = []
    print("| run | seed | zero-shot | train only: pick, test acc. (decisive) | refit: pick, test acc. (decisive) |")
    print("| ---: | ---: | ---: | --- | --- |")
    for run_id in args.run:
        run = Run.objects.get(pk=run_id, kind="reward_train")
        pairs, train_config = run_votes(run)
        features = FeatureCache(train_config.backbone, device="cpu")
        for seed in (int(s) for s in args.seeds.split(",")):
            row = compare(run, pairs, train_config, seed, features)
            rows.append(row)
            cells = [
                f"{r['chosen']}, {r['test_accuracy']:.3f} ({r['test_decisive_accuracy']:.3f})"
                for r in (row["train_only"], row["refit"])
            ]
            print(f"| {run_id} | {seed} | {row['zero_shot']:.3f} | {cells[0]} | {cells[1]} |", flush=True)
    for key in ("train_only", "refit"):
        gains = [100 * (row[key]["test_accuracy"] - row["zero_shot"]) for row in rows]
        print(f"{key}: mean {sum(gains) / len(gains):+.1f} points over zero-shot, lowest {min(gains):+.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

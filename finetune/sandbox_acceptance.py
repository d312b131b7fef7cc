"""Sandbox acceptance for DDPO: eval-prompt reward before and after fine-tuning, over several seeds. No Django.

    python -m finetune.sandbox_acceptance --reward area --seeds 0 1 2     # shape size (pixel oracle)
    python -m finetune.sandbox_acceptance --reward colour --seeds 0 1 2   # colour match (pixel oracle)
    python -m finetune.sandbox_acceptance --reward learned --seeds 0 1 2  # a reward model trained first on
                                                                          # simulated "larger shape wins" votes
    python -m finetune.sandbox_acceptance --reward learned --reward-model DIR --set epochs=40
    python -m finetune.sandbox_acceptance --reward learned --reward-model DIR --gold centred  # a cycle's model
    python -m finetune.sandbox_acceptance --pipeline flow --reward area  # Flow-GRPO on the flow sandbox (SD3)

The trainer runs with its defaults (``finetune/config.py``) unless ``--set key=value`` overrides them. The
learned reward is trained as in the rewards acceptance (``rewards.sandbox_experiment``: 2,882 noisy votes on
sandbox images) and the area oracle (``--gold``) is its gold reward, so a gain in the model's score that the oracle does
not share (reward hacking) shows. Prints one line per seed, the mean gain with its standard deviation, and a
JSON line last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch

from core.jobs import NullJobContext
from core.plugins import Plugin
from generators.sandbox import FLOW_PIPELINE_PATH, PIPELINE_PATH
from generators.sandbox.registration import ORACLES as SANDBOX_ORACLES
from generators.sandbox_catalog import sandbox_prompts

from .reward import per_image
from .trainer import DDPOTrainer

# Every sandbox pixel oracle, by its registered name (the registration is the one list of them).
ORACLES = {
    name: per_image(Plugin("oracle", name, target, "built-in").load()) for name, target in SANDBOX_ORACLES.items()
}


# The sandboxes the trainer runs on: the DDIM UNet (DDPO) and the flow transformer (Flow-GRPO).
PIPELINES = {"sandbox": PIPELINE_PATH, "flow": FLOW_PIPELINE_PATH}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _learned_reward(model_dir: str | None):
    from rewards.sandbox_experiment import run_experiment
    from rewards.scoring import RewardFunction

    if model_dir is None:
        model_dir = tempfile.mkdtemp(prefix="sandbox-reward-")
        report = run_experiment(output_dir=model_dir)
        print(
            f"reward model: {report['votes']} votes, held-out decisive accuracy "
            f"{report['trained_decisive_accuracy']:.3f} (zero-shot {report['baseline_decisive_accuracy']:.3f}), "
            f"saved in {model_dir}"
        )
    return RewardFunction.from_directory(model_dir)


class _CurveContext(NullJobContext):
    """Keeps the training reward of each epoch and the evaluations (the curve, not only its end points)."""

    def __init__(self) -> None:
        self.train_reward: list[float] = []
        self.evals: dict[int, dict[str, float]] = {}

    def log_metrics(self, step: int, values) -> None:
        if "reward_mean" in values:
            self.train_reward.append(round(float(values["reward_mean"]), 3))
        if "eval_reward_mean" in values:
            self.evals[step] = {key: round(float(value), 3) for key, value in values.items()}


def run_seed(
    reward: str, seed: int, overrides: dict[str, Any], reward_fn, gold_fn, pipeline: str = "sandbox"
) -> dict[str, Any]:
    prompts = sandbox_prompts()
    train = [p["text"] for p in prompts["train"]]
    evaluate = [p["text"] for p in prompts["eval"]]
    began, ctx = time.perf_counter(), _CurveContext()
    trainer = DDPOTrainer(
        str(PIPELINES[pipeline]),
        {**overrides, "seed": seed},
        reward_fn,
        train,
        evaluate,
        ctx,
        gold_reward_fn=gold_fn,
    )
    summary = trainer.train().summary
    row = {
        "reward": reward,
        "pipeline": pipeline,
        "algorithm": summary["algorithm"],
        "seed": seed,
        "before": summary["eval_reward_before"],
        "after": summary["eval_reward_after"],
        "gold_before": summary.get("eval_gold_reward_before"),
        "gold_after": summary.get("eval_gold_reward_after"),
        "minutes": (time.perf_counter() - began) / 60,
        "train_reward_by_epoch": ctx.train_reward,
        "evals": ctx.evals,
    }
    row["gain"] = row["after"] - row["before"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reward", choices=[*ORACLES, "learned"], default="area")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reward-model", help="a saved reward model directory (learned reward; default: train one)")
    parser.add_argument("--gold", choices=sorted(ORACLES), default="area", help="the learned reward's gold oracle")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DDPO config override")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="sandbox", help="flow: Flow-GRPO on SD3")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {key: _value(value) for key, _, value in (item.partition("=") for item in args.set)}
    if args.reward == "learned":
        reward_fn, gold_fn = _learned_reward(args.reward_model), ORACLES[args.gold]
    else:
        reward_fn, gold_fn = ORACLES[args.reward], None
    rows = []
    for seed in args.seeds:
        row = run_seed(args.reward, seed, overrides, reward_fn, gold_fn, args.pipeline)
        gold = f", gold ({args.gold}) {row['gold_before']:.3f} → {row['gold_after']:.3f}" if gold_fn else ""
        print(f"seed {seed}: {args.reward} {row['before']:.3f} → {row['after']:.3f}{gold} ({row['minutes']:.1f} min)")
        rows.append(row)
    gains = [row["gain"] for row in rows]
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    print(f"gain {statistics.mean(gains):+.3f} (SD {spread:.3f} over {len(gains)} seeds)")
    print(json.dumps({"reward": args.reward, "overrides": overrides, "seeds": rows}))


if __name__ == "__main__":
    main()

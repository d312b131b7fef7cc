"""Reward training throughput: pairs/s of our trainer (``rewards.train``) against a plain PickScore-style loop
written here, on the same sandbox CLIP, the same votes and the same settings, measured in the same run.

    python bench/reward_train.py                    # 2 rounds of 200 steps × 64 pairs, one thread
    python bench/reward_train.py --steps 100 --rounds 3 --threads 2

Data: sandbox pipeline images, two per pair from the same prompt, labelled by simulated annotators who prefer
the larger shape (10% of votes flipped) — the acceptance experiment's data (``rewards.sandbox_experiment``).

The plain loop is what one writes from the PickScore paper: ``CLIPProcessor`` on each batch's prompts and
images (as PickScore's data loader does), ``get_text_features`` / ``get_image_features``, exp(τ)·cos, cross-
entropy against the (1, 0) / (0, 1) / (0.5, 0.5) labels weighted by 1 / examples of the prompt, AdamW, warm-up +
cosine, gradient clipping; the final weights are evaluated. A second plain variant takes pre-processed tensors
(so only the loop itself is compared). Training pairs/s counts optimizer steps × batch over the time spent in
them (ours: ``train_seconds``, excluding its periodic validation; plain: the loop). Variants alternate
(ABC ABC ...) in one process; medians are reported. Accuracies are on the same held-out, prompt-disjoint test
votes with the tie threshold chosen on validation. Prints a table and a JSON line last.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import CLIPModel, CLIPProcessor, get_cosine_schedule_with_warmup  # noqa: E402

from generators.sandbox import CLIP_PATH  # noqa: E402
from rewards.data import PreferencePair, prompt_weights, split_by_prompt  # noqa: E402
from rewards.metrics import choose_threshold, evaluate_predictions, pair_probabilities  # noqa: E402
from rewards.sandbox_experiment import ExperimentConfig, generate_sandbox_images, simulate_votes  # noqa: E402
from rewards.train import RewardTrainConfig, train_reward_model  # noqa: E402


def build_data(args) -> tuple[list[PreferencePair], list[PreferencePair], list[PreferencePair]]:
    from generators.sandbox.dataset import all_captions

    config = ExperimentConfig(images_per_prompt=args.images_per_prompt, seed=args.seed)
    images = generate_sandbox_images(
        all_captions(with_sizes=True), config.images_per_prompt, config.diffusion_steps, config.guidance, args.seed
    )
    votes, _ = simulate_votes(images, config)
    return split_by_prompt(votes, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=0)


def ours(config: RewardTrainConfig, train, val, test) -> dict:
    began = time.perf_counter()
    result = train_reward_model(config, train, val, test)
    return {
        "pairs_per_second": result["pairs_per_second"],
        "end_to_end_seconds": time.perf_counter() - began,
        "test_accuracy": result["test"]["accuracy"],
        "test_decisive_accuracy": result["test"]["decisive_accuracy"],
    }


def plain(config: RewardTrainConfig, train, val, test, preprocessed: bool) -> dict:
    """The straightforward loop (see the module docstring)."""
    began = time.perf_counter()
    torch.manual_seed(config.seed)
    model = CLIPModel.from_pretrained(CLIP_PATH)
    processor = CLIPProcessor.from_pretrained(CLIP_PATH)
    length = model.config.text_config.max_position_embeddings
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    weights = torch.tensor(prompt_weights(train))
    labels = torch.tensor([[p.label_a, p.label_b] for p in train])

    def encode(prompts, images_a, images_b):
        inputs = processor(
            text=prompts,
            images=list(images_a) + list(images_b),
            padding="max_length",
            max_length=length,
            truncation=True,
            return_tensors="pt",
        )
        return inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]

    def scores(input_ids, attention_mask, pixel_values):
        text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        image = model.get_image_features(pixel_values=pixel_values).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
        image = image / image.norm(dim=-1, keepdim=True)
        image_a, image_b = image.chunk(2)
        scale = model.logit_scale.exp()
        return torch.stack([scale * (text * image_a).sum(-1), scale * (text * image_b).sum(-1)], dim=-1)

    cache = None
    if preprocessed:
        cache = encode([p.prompt for p in train], [p.image_a for p in train], [p.image_b for p in train])
    order: list[int] = []
    rng = random.Random(config.seed)
    model.train()
    loop_began = time.perf_counter()
    for _ in range(config.max_steps):
        if len(order) < config.batch_size:
            epoch = list(range(len(train)))
            rng.shuffle(epoch)
            order = epoch
        batch, order = order[: config.batch_size], order[config.batch_size :]
        if cache is not None:
            ids, mask, pixels = cache
            index = torch.tensor(batch)
            inputs = (ids[index], mask[index], torch.cat([pixels[: len(train)][index], pixels[len(train) :][index]]))
        else:
            pairs = [train[i] for i in batch]
            inputs = encode([p.prompt for p in pairs], [p.image_a for p in pairs], [p.image_b for p in pairs])
        logits = scores(*inputs)
        target, weight = labels[batch], weights[batch]
        loss = (-(target * torch.log_softmax(logits, dim=-1)).sum(-1) * weight).sum() / weight.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    loop_seconds = time.perf_counter() - loop_began

    model.eval()

    @torch.no_grad()
    def probabilities(pairs):
        out = scores(*encode([p.prompt for p in pairs], [p.image_a for p in pairs], [p.image_b for p in pairs]))
        return pair_probabilities(out[:, 0].numpy(), out[:, 1].numpy())

    threshold, _ = choose_threshold(probabilities(val), [p.label_a for p in val])
    metrics = evaluate_predictions(probabilities(test), [p.label_a for p in test], threshold)
    return {
        "pairs_per_second": config.max_steps * config.batch_size / loop_seconds,
        "end_to_end_seconds": time.perf_counter() - began,
        "test_accuracy": metrics["accuracy"],
        "test_decisive_accuracy": metrics["decisive_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images-per-prompt", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, val, test = build_data(args)
    config = RewardTrainConfig(
        backbone=str(CLIP_PATH), max_steps=args.steps, batch_size=args.batch_size, seed=args.seed
    )
    variants = {
        "ours": lambda: ours(config, train, val, test),
        "plain": lambda: plain(config, train, val, test, preprocessed=False),
        "plain_preprocessed": lambda: plain(config, train, val, test, preprocessed=True),
    }
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            rows[name].append(run())
    summary: dict = {}
    for name, results in rows.items():
        rates = [r["pairs_per_second"] for r in results]
        summary[name] = {
            "pairs_per_second": round(statistics.median(rates), 1),
            "all_rates": [round(r, 1) for r in rates],
            "end_to_end_seconds": round(statistics.median(r["end_to_end_seconds"] for r in results), 1),
            "test_accuracy": round(float(np.mean([r["test_accuracy"] for r in results])), 4),
            "test_decisive_accuracy": round(float(np.mean([r["test_decisive_accuracy"] for r in results])), 4),
        }
    ours_rate = summary["ours"]["pairs_per_second"]
    summary["ratio_ours_over_plain"] = round(ours_rate / summary["plain"]["pairs_per_second"], 3)
    summary["ratio_ours_over_plain_preprocessed"] = round(
        summary["ours"]["pairs_per_second"] / summary["plain_preprocessed"]["pairs_per_second"], 3
    )
    summary["settings"] = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "train_votes": len(train),
        "val_votes": len(val),
        "test_votes": len(test),
        "lr": config.lr,
        "trainable_layers": config.trainable_layers,
    }
    header = ("trainer", "pairs/s (median)", "all rounds", "end-to-end s", "test acc", "decisive")
    print(f"{header[0]:<20}{header[1]:>18}{header[2]:>22}{header[3]:>14}{header[4]:>10}{header[5]:>10}")
    for name in variants:
        row = summary[name]
        print(
            f"{name:<20}{row['pairs_per_second']:>18}{str(row['all_rates']):>22}{row['end_to_end_seconds']:>14}"
            f"{row['test_accuracy']:>10}{row['test_decisive_accuracy']:>10}"
        )
    print(
        f"ours / plain pairs/s: {summary['ratio_ours_over_plain']} (target ≥ 1.0); "
        f"ours / plain with pre-processed tensors: {summary['ratio_ours_over_plain_preprocessed']}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

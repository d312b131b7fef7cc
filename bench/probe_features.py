"""Linear probes: can a backbone see a preference at all? Held-out R² of ridge regression from frozen features to
each oracle's score, for every (oracle, feature source).

    python bench/probe_features.py                                  # sandbox CLIP, the registered sandbox oracles
    python bench/probe_features.py --oracles area,centred --backbone /path/to/clip --json probes.json

Images: ``--per-prompt`` (default 6) images of each of the 96 sandbox prompts from the real sandbox pipeline
(576 images, cached, see ``bench/sandbox_images.py``). Targets: each registered pixel ``oracle`` (``core.plugins``:
the sandbox's, entry points an operator installed) scores every image. Feature sources:

- ``clip_pooled``: the CLIP image embedding (projected pooled output) that a PickScore-style score reads;
- ``clip_image_text``: that embedding, the prompt's text embedding and their product (both normalised);
- ``clip_patches``: the vision tower's last hidden states of the patch tokens, flattened;
- ``clip_patches_mean``: the same tokens averaged (what a plain mean-pooling head could read);
- ``vae_latents``: the sandbox pipeline's VAE posterior mean, flattened (only for the sandbox pipeline);
- ``pixels``: raw RGB values (a reference: what any model could read in principle).

Ridge regression (closed form through an SVD, features standardised on the training part), the penalty chosen by
an inner prompt-grouped 4-fold cross-validation among 15 values; the R² is that of the out-of-fold predictions of
a 5-fold cross-validation grouped by prompt (no prompt is in both the training and the held-out part). R² near 1:
the preference is a linear function of those features; near 0 or negative: a linear read-out cannot see it (a
non-linear head may still). Pairs compare images of the same prompt, so the table also gives the within-prompt R²:
the same held-out predictions and scores, each less its prompt's mean (a preference that mostly varies between
prompts, e.g. with the colour, can have a high R² and still be hard to learn from pairs). Prints a table (oracles
× sources) and writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.sandbox_images import cached_sandbox_images  # noqa: E402

SOURCES = ("clip_pooled", "clip_image_text", "clip_patches", "clip_patches_mean", "vae_latents", "pixels")
ALPHAS = np.logspace(-3, 5, 15)


def registered_oracles() -> dict[str, Callable]:
    """Every registered pixel oracle by name (the sandbox registration loaded, as the platform does)."""
    from core import plugins

    plugins.load_registrations(["generators.sandbox.registration"])
    return {name: plugins.resolve("oracle", name) for name in plugins.names("oracle")}


def resolve_backbone(name: str) -> str:
    """A registered ``reward_backbone`` name to its checkpoint; anything else is a folder or hub id as given."""
    from core import plugins

    plugins.load_registrations(["generators.sandbox.registration"])
    if name in plugins.names("reward_backbone"):
        return os.fspath(plugins.resolve("reward_backbone", name))
    return name


@torch.no_grad()
def clip_features(backbone: str, prompts: Sequence[str], images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The four CLIP feature sources for each (prompt, image)."""
    from rewards.model import RewardModel

    model = RewardModel.from_pretrained(backbone).eval()
    clip = model.clip
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("clip_pooled", "clip_image_text", "clip_patches")}
    for start in range(0, len(images), 64):
        pixels = model.preprocess_images(images[start : start + 64])
        tokens = model.tokenize(prompts[start : start + 64])
        vision = clip.vision_model(pixel_values=pixels)
        image = torch.nn.functional.normalize(clip.visual_projection(vision.pooler_output), dim=-1)
        text = model.encode_text(tokens["input_ids"], tokens["attention_mask"])
        out["clip_pooled"].append(image.numpy())
        out["clip_image_text"].append(torch.cat([image, text, image * text], dim=1).numpy())
        out["clip_patches"].append(vision.last_hidden_state[:, 1:].flatten(1).numpy())
    features = {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}
    patches = features["clip_patches"].reshape(len(images), -1, clip.config.vision_config.hidden_size)
    features["clip_patches_mean"] = patches.mean(axis=1)
    return features


@torch.no_grad()
def vae_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """The sandbox pipeline's VAE posterior mean of each image, flattened."""
    from diffusers import AutoencoderKL

    from generators.sandbox import PIPELINE_PATH

    vae = AutoencoderKL.from_pretrained(PIPELINE_PATH / "vae").eval()
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    latents = [vae.encode(pixels[i : i + 64]).latent_dist.mean.flatten(1) for i in range(0, len(pixels), 64)]
    return torch.cat(latents).numpy().astype(np.float64)


def _ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge predictions (alphas, n_test, targets) for every penalty, features standardised on the train part."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std < 1e-12] = 1.0
    a, b = (x_train - mean) / std, (x_test - mean) / std
    y_mean = y_train.mean(axis=0)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    uty = u.T @ (y_train - y_mean)  # (k, targets)
    projected = b @ vt.T  # (n_test, k)
    shrink = s[None, :] / (s[None, :] ** 2 + alphas[:, None])  # (alphas, k)
    return np.einsum("tk,ak,kj->atj", projected, shrink, uty) + y_mean


def _group_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index of each row: whole groups (prompts) shuffled into ``folds`` folds."""
    unique = np.unique(groups)
    np.random.default_rng(seed).shuffle(unique)
    fold_of = {g: i % folds for i, g in enumerate(unique)}
    return np.asarray([fold_of[g] for g in groups])


def r2(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """R² of each target column (1 − SSE / SST)."""
    sst = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ((y - predicted) ** 2).sum(axis=0) / np.where(sst > 0, sst, np.nan)


def within_group(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` less their group's mean (per column): what is left to tell images of one prompt apart."""
    out = values.astype(np.float64).copy()
    for g in np.unique(groups):
        rows = groups == g
        out[rows] -= out[rows].mean(axis=0)
    return out


def probe_predictions(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold ridge predictions of each target column of ``y`` from ``x`` (prompt-grouped, nested CV)."""
    outer = _group_folds(groups, folds, seed)
    predicted = np.zeros_like(y)
    for fold in range(folds):
        train, test = outer != fold, outer == fold
        inner = _group_folds(groups[train], 4, seed + 1 + fold)
        errors = np.zeros((len(ALPHAS), y.shape[1]))
        for inner_fold in range(4):
            fit, held = inner != inner_fold, inner == inner_fold
            guesses = _ridge_predict(x[train][fit], y[train][fit], x[train][held], ALPHAS)
            errors += ((guesses - y[train][held][None]) ** 2).sum(axis=1)
        best = errors.argmin(axis=0)  # one penalty per target
        guesses = _ridge_predict(x[train], y[train], x[test], ALPHAS)
        predicted[test] = guesses[best, :, np.arange(y.shape[1])].T
    return predicted


def probe_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Held-out R² of each target column of ``y`` from ``x``: prompt-grouped nested cross-validation."""
    return r2(y, probe_predictions(x, y, groups, folds, seed))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="sandbox", help="registered reward_backbone name, CLIP folder or id")
    parser.add_argument("--oracles", default="", help="comma-separated registered oracle names (default: all)")
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated, from {', '.join(SOURCES)}")
    parser.add_argument("--per-prompt", type=int, default=6, help="images per sandbox prompt (96 prompts)")
    parser.add_argument("--seed", type=int, default=0, help="image seed and fold assignment")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()

    oracles = registered_oracles()
    names = [n.strip() for n in args.oracles.split(",") if n.strip()] or sorted(oracles)
    unknown = [n for n in names if n not in oracles]
    if unknown:
        parser.error(f"unknown oracle(s) {', '.join(unknown)}; registered: {', '.join(sorted(oracles))}")
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if bad := [s for s in sources if s not in SOURCES]:
        parser.error(f"unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")

    by_prompt = cached_sandbox_images(args.per_prompt, args.seed)
    prompts = [p for p, images in by_prompt.items() for _ in images]
    images = [image for p in by_prompt for image in by_prompt[p]]
    groups = np.asarray(prompts)
    y = np.asarray([[oracles[n](p, im) for n in names] for p, im in zip(prompts, images, strict=True)], dtype=float)

    backbone = resolve_backbone(args.backbone)
    features: dict[str, np.ndarray] = {}
    if any(s.startswith("clip") for s in sources):
        features.update(clip_features(backbone, prompts, images))
    if "vae_latents" in sources:
        features["vae_latents"] = vae_features(images)
    if "pixels" in sources:
        features["pixels"] = np.stack(images).reshape(len(images), -1).astype(np.float64)

    table, within = {}, {}
    y_within = within_group(y, groups)
    for s in sources:
        predicted = probe_predictions(features[s], y, groups, seed=args.seed)
        table[s] = dict(zip(names, r2(y, predicted).tolist(), strict=True))
        within[s] = dict(zip(names, r2(y_within, within_group(predicted, groups)).tolist(), strict=True))
    print(f"Held-out R² of a ridge probe ({len(images)} images, {len(by_prompt)} prompts, 5 prompt-grouped folds)")
    print(f"backbone: {backbone}; each cell: R² of the score / within-prompt R² (scores less their prompt's mean)")
    width = max(len(s) for s in sources)
    print(f"{'source':<{width}} | dims | " + " | ".join(f"{n:>13}" for n in names))
    for s in sources:
        cells = " | ".join(f"{table[s][n]:6.3f}/{within[s][n]:6.3f}" for n in names)
        print(f"{s:<{width}} | {features[s].shape[1]:>4} | {cells}")
    result = {
        "r2": table,
        "within_prompt_r2": within,
        "dims": {s: int(features[s].shape[1]) for s in sources},
        "oracles": names,
        "oracle_score_std": dict(zip(names, y.std(axis=0).tolist(), strict=True)),
        "images": len(images),
        "prompts": len(by_prompt),
        "backbone": backbone,
        "seconds": time.perf_counter() - began,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

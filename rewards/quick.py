"""Quick reward models: a small head ensemble on frozen, cached CLIP features, fitted in seconds. No Django imports.

    model = fit_quick_reward_model(pairs, backbone=str(CLIP_PATH))          # pairs: rewards.data.PreferencePair
    pred = model.predict_pairs(prompts, images_a, images_b)                   # PairPrediction: p_a, spread
    model.score(prompts, images)                                              # one float per image

Each member trains with PickScore's loss (ties as 0.5/0.5, per-prompt weights) on a bootstrap resample of the
pairs (and its own seed), so the members' disagreement (``spread``) is a per-pair uncertainty. The ensemble's
probability is the mean of the members' ``sigmoid((s_a − s_b) / T)``, with the temperature T fitted to minimise
the log-loss on validation pairs (or, without them, on each pair's out-of-bag members). Pass one
:class:`~rewards.features.FeatureCache` to reuse image features across refits (a campaign refitting every N
votes computes each image's features once). A fit restarts from scratch (no checkpoint): it takes seconds.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .config import DEFAULT_HEAD
from .data import PreferencePair, RewardDataError, check_training_pairs, prompt_weights
from .features import FeatureCache, ImageFeatures, TextFeatures
from .heads import HEAD_KINDS, HeadConfig, HeadEnsemble, HeadInputs
from .losses import preference_loss
from .metrics import log_loss

__all__ = [
    "DEFAULT_HEAD",
    "PairPrediction",
    "PairTable",
    "QuickRewardModel",
    "fit_head_ensemble",
    "fit_quick_reward_model",
    "fit_temperature",
    "pair_table",
]

_PREDICT_BATCH = 1024


@dataclass
class PairPrediction:
    """A model's view of N pairs: ``p_a`` (N,) calibrated P(a preferred), the ensemble mean; ``spread`` (N,) the
    standard deviation of the members' P(a); ``members`` (M, N) each member's P(a)."""

    p_a: np.ndarray
    spread: np.ndarray
    members: np.ndarray = field(repr=False)


@dataclass
class PairTable:
    """Pairs in feature space: unique images and prompts, and per pair the rows of a, b and the prompt."""

    images: ImageFeatures
    texts: TextFeatures
    a: torch.Tensor
    b: torch.Tensor
    prompt: torch.Tensor
    label_a: torch.Tensor
    label_b: torch.Tensor
    weight: torch.Tensor

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def subset(self, rows: torch.Tensor) -> PairTable:
        """The pairs ``rows`` of this table (the image and prompt features are shared, not copied)."""
        return replace(
            self,
            a=self.a[rows],
            b=self.b[rows],
            prompt=self.prompt[rows],
            label_a=self.label_a[rows],
            label_b=self.label_b[rows],
            weight=self.weight[rows],
        )

    def standardised(self, ensemble: HeadEnsemble) -> _Standardised:
        """This table's features as ``ensemble`` reads them (standardised once for all rows)."""
        image, tokens = ensemble.standard_images(self.images.pooled, self.images.patches)
        return _Standardised(ensemble, self, image, tokens, ensemble.standard_text(self.texts.pooled))

    def scores(self, ensemble: HeadEnsemble, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Member scores (M, n) of images a and b of the pairs ``rows`` (all: None), without gradients."""
        rows = torch.arange(len(self)) if rows is None else rows
        outs_a, outs_b = [], []
        was_training = ensemble.training
        ensemble.eval()
        try:
            with torch.no_grad():
                standard = self.standardised(ensemble)
                for start in range(0, len(rows), _PREDICT_BATCH):
                    chunk = rows[start : start + _PREDICT_BATCH]
                    for side, out in ((self.a, outs_a), (self.b, outs_b)):
                        out.append(ensemble.member_scores(standard.inputs(side[chunk], self.prompt[chunk])))
        finally:
            ensemble.train(was_training)
        if not outs_a:
            empty = torch.empty(ensemble.size, 0)
            return empty, empty
        return torch.cat(outs_a, dim=1), torch.cat(outs_b, dim=1)

    def zero_shot_p_a(self, logit_scale: float) -> np.ndarray:
        """The untrained backbone's P(a): sigmoid(exp(τ) · (cos(t, a) − cos(t, b)))."""
        text = self.texts.pooled[self.prompt]
        diff = ((self.images.pooled[self.a] - self.images.pooled[self.b]) * text).sum(-1) * logit_scale
        return torch.sigmoid(diff.double()).numpy()


@dataclass(frozen=True)
class _Unkeyed:
    index: int


@dataclass
class _Standardised:
    """A table's standardised features; :meth:`inputs` gathers the heads' inputs of some (image, prompt) rows."""

    ensemble: HeadEnsemble
    table: PairTable
    image: torch.Tensor
    tokens: torch.Tensor
    text: torch.Tensor

    def inputs(self, image_rows: torch.Tensor, prompt_rows: torch.Tensor) -> HeadInputs:
        raw_image, raw_text = self.table.images.pooled[image_rows], self.table.texts.pooled[prompt_rows]
        return HeadInputs(
            self.image[image_rows],
            self.tokens[image_rows],
            self.text[prompt_rows],
            self.ensemble.standard_cos(raw_image, raw_text),
        )


def _image_memo_key(source: Any) -> Hashable:
    if isinstance(source, str | os.PathLike):
        return ("path", os.fspath(source))
    if isinstance(source, bytes):
        return ("bytes", source)
    return ("object", id(source))


def pair_table(
    cache: FeatureCache,
    pairs: Sequence[PreferencePair],
    keys_a: Sequence[Hashable] | None = None,
    keys_b: Sequence[Hashable] | None = None,
) -> PairTable:
    """Features of every image and prompt of ``pairs`` (computed once each) arranged as a :class:`PairTable`."""
    for name, keys in (("image_keys_a", keys_a), ("image_keys_b", keys_b)):
        if keys is not None and len(keys) != len(pairs):
            raise RewardDataError(f"{name}: {len(keys)} keys for {len(pairs)} pairs")
    # Within one call, an image object (or path) that appears in several pairs is decoded and hashed once.
    resolved: list[Any] = []
    keyed_sources, keyed_keys, unkeyed = [], [], []
    memo: dict[Hashable, int] = {}
    for i, pair in enumerate(pairs):
        for source, keys in ((pair.image_a, keys_a), (pair.image_b, keys_b)):
            if keys is not None:
                resolved.append(keys[i])
                keyed_sources.append(source)
                keyed_keys.append(keys[i])
                continue
            memo_key = _image_memo_key(source)
            if memo_key not in memo:
                memo[memo_key] = len(unkeyed)
                unkeyed.append(source)
            resolved.append(_Unkeyed(memo[memo_key]))
    if keyed_sources:
        cache.keys_for(keyed_sources, keyed_keys)
    computed = cache.keys_for(unkeyed) if unkeyed else []
    resolved = [computed[k.index] if isinstance(k, _Unkeyed) else k for k in resolved]
    unique = list(dict.fromkeys(resolved))
    row_of = {key: row for row, key in enumerate(unique)}
    prompts = list(dict.fromkeys(p.prompt for p in pairs))
    prompt_row = {p: i for i, p in enumerate(prompts)}
    return PairTable(
        images=cache.features_of_keys(unique),
        texts=cache.text_features(prompts),
        a=torch.tensor([row_of[k] for k in resolved[0::2]], dtype=torch.long),
        b=torch.tensor([row_of[k] for k in resolved[1::2]], dtype=torch.long),
        prompt=torch.tensor([prompt_row[p.prompt] for p in pairs], dtype=torch.long),
        label_a=torch.tensor([p.label_a for p in pairs], dtype=torch.float32),
        label_b=torch.tensor([p.label_b for p in pairs], dtype=torch.float32),
        weight=torch.tensor(prompt_weights(pairs) if pairs else [], dtype=torch.float32),
    )


def _probabilities(scores_a: torch.Tensor, scores_b: torch.Tensor, temperature: float) -> np.ndarray:
    """(M, n) members' P(a) = sigmoid((s_a − s_b) / T)."""
    return torch.sigmoid((scores_a - scores_b).double() / temperature).numpy()


def fit_temperature(scores_a: np.ndarray, scores_b: np.ndarray, label_a: np.ndarray, mask: np.ndarray | None = None):
    """The temperature T minimising the log-loss of mean_m sigmoid((s_a − s_b)_m / T) (1.0 without pairs).

    ``scores_*`` (M, n); ``mask`` (M, n) chooses which members count for which pair (out-of-bag), all if None.
    A pair no member counts for is left out.
    """
    diff = np.asarray(scores_a, dtype=np.float64) - np.asarray(scores_b, dtype=np.float64)
    mask = np.ones_like(diff, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    keep = mask.any(0)
    if not keep.any():
        return 1.0
    diff, mask, label = diff[:, keep], mask[:, keep], np.asarray(label_a, dtype=np.float64)[keep]

    def loss(log_t: float) -> float:
        p = 1.0 / (1.0 + np.exp(-np.clip(diff / math.exp(log_t), -60, 60)))
        mean = (p * mask).sum(0) / mask.sum(0)
        return log_loss(mean, label)

    grid = np.linspace(-4.0, 4.0, 81)
    best = float(grid[int(np.argmin([loss(g) for g in grid]))])
    for width in (0.1, 0.01):  # refine around the best grid point
        local = np.linspace(best - width, best + width, 21)
        best = float(local[int(np.argmin([loss(g) for g in local]))])
    return math.exp(best)


def _train_member(
    head: torch.nn.Module,
    table: PairTable,
    standard: _Standardised,
    rows: torch.Tensor,
    config: HeadConfig,
    generator: torch.Generator,
) -> None:
    """AdamW with a linear warm-up (10%) and a cosine decay, ``config.steps`` batches drawn from ``rows``."""
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    head.train()
    batch_size = min(config.batch_size, len(rows))
    for _ in range(config.steps):
        batch = rows[torch.randint(len(rows), (batch_size,), generator=generator)]
        images = torch.cat([table.a[batch], table.b[batch]])
        prompts = table.prompt[batch]
        scores = head(standard.inputs(images, torch.cat([prompts, prompts])))
        loss = preference_loss(
            scores[:batch_size], scores[batch_size:], table.label_a[batch], table.label_b[batch], table.weight[batch]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    head.eval()


def fit_head_ensemble(
    train: PairTable,
    config: HeadConfig,
    *,
    ensemble_size: int = 5,
    seed: int = 0,
    bootstrap: bool = True,
    val: PairTable | None = None,
    calibrate: bool = True,
) -> tuple[HeadEnsemble, dict[str, Any]]:
    """Train ``ensemble_size`` heads (bootstrap resamples when ``bootstrap`` and more than one member), then fit
    the temperature on ``val`` (or out-of-bag) when ``calibrate``. Returns the ensemble and a summary dict.

    Deterministic for a seed; the global torch RNG is left as it was.
    """
    if not len(train):
        raise RewardDataError("no preference pairs to train on")
    began = time.perf_counter()
    dim, tokens = int(train.images.pooled.shape[1]), int(train.images.patches.shape[1])
    n = len(train)
    in_bag = np.zeros((ensemble_size, n), dtype=bool)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ensemble = HeadEnsemble(config, dim, tokens, ensemble_size)
        text = train.texts.pooled[train.prompt]
        cos = torch.cat([(train.images.pooled[side] * text).sum(-1) for side in (train.a, train.b)])
        ensemble.fit_standardisation(train.images.pooled, train.images.patches, train.texts.pooled, cos)
        standard = train.standardised(ensemble)
        for member_index, member in enumerate(ensemble.members):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + member_index)
            torch.manual_seed(seed * 1_000_003 + member_index)  # dropout
            resample = bootstrap and ensemble_size > 1
            rows = torch.randint(n, (n,), generator=generator) if resample else torch.arange(n)
            in_bag[member_index, rows.numpy()] = True
            _train_member(member, train, standard, rows, config, generator)
    ensemble.eval()
    summary: dict[str, Any] = {
        "head": config.to_dict(),
        "ensemble_size": ensemble_size,
        "bootstrap": bool(bootstrap and ensemble_size > 1),
        "train_pairs": n,
        "fit_seconds": time.perf_counter() - began,
        "temperature": 1.0,
        "calibrated_on": None,
    }
    if calibrate:
        if val is not None and len(val):
            scores_a, scores_b = val.scores(ensemble)
            temperature = fit_temperature(scores_a.numpy(), scores_b.numpy(), val.label_a.numpy())
            summary["calibrated_on"] = "validation"
        elif summary["bootstrap"]:
            scores_a, scores_b = train.scores(ensemble)
            temperature = fit_temperature(scores_a.numpy(), scores_b.numpy(), train.label_a.numpy(), ~in_bag)
            summary["calibrated_on"] = "out_of_bag"
        else:
            temperature = 1.0
        ensemble.temperature.fill_(temperature)
        summary["temperature"] = float(temperature)
    summary["seconds"] = time.perf_counter() - began
    return ensemble, summary


class QuickRewardModel:
    """A fitted head ensemble plus the frozen backbone's feature cache (see the module docstring)."""

    def __init__(self, ensemble: HeadEnsemble, features: FeatureCache, info: dict[str, Any] | None = None) -> None:
        self.ensemble = ensemble.eval()
        self.features = features
        self.info = dict(info or {})

    @property
    def head(self) -> str:
        return self.ensemble.config.kind

    @property
    def temperature(self) -> float:
        return float(self.ensemble.temperature)

    def _member_scores(self, prompts: Sequence[str], images: Sequence[Any], keys) -> torch.Tensor:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: need one prompt per image")
        image_features = self.features.image_features(images, keys)
        text = self.features.text_features(list(prompts)).pooled
        out = []
        with torch.no_grad():
            for start in range(0, len(prompts), _PREDICT_BATCH):
                end = start + _PREDICT_BATCH
                inputs = self.ensemble.inputs(
                    image_features.pooled[start:end], image_features.patches[start:end], text[start:end]
                )
                out.append(self.ensemble.member_scores(inputs))
        return torch.cat(out, dim=1) if out else torch.empty(self.ensemble.size, 0)

    def member_scores(
        self, prompts: Sequence[str], images: Sequence[Any], keys: Sequence[Hashable] | None = None
    ) -> np.ndarray:
        """(M, N) each member's raw score of each (prompt, image)."""
        return self._member_scores(prompts, images, keys).numpy()

    def score(
        self, prompts: Sequence[str], images: Sequence[Any], keys: Sequence[Hashable] | None = None
    ) -> np.ndarray:
        """One float per (prompt, image): the members' mean score over the temperature (higher is better)."""
        return (self._member_scores(prompts, images, keys).mean(0) / self.temperature).numpy()

    def predict_pairs(
        self,
        prompts: Sequence[str],
        images_a: Sequence[Any],
        images_b: Sequence[Any],
        keys_a: Sequence[Hashable] | None = None,
        keys_b: Sequence[Hashable] | None = None,
    ) -> PairPrediction:
        """Calibrated P(a preferred) and the members' spread for each (prompt, image a, image b)."""
        if not len(prompts) == len(images_a) == len(images_b):
            raise ValueError(f"{len(prompts)} prompts for {len(images_a)} images a and {len(images_b)} images b")
        scores_a = self._member_scores(prompts, images_a, keys_a)
        scores_b = self._member_scores(prompts, images_b, keys_b)
        return self._prediction(scores_a, scores_b)

    def predict_table(self, table: PairTable) -> PairPrediction:
        """:meth:`predict_pairs` for pairs already in feature space."""
        return self._prediction(*table.scores(self.ensemble))

    def _prediction(self, scores_a: torch.Tensor, scores_b: torch.Tensor) -> PairPrediction:
        members = _probabilities(scores_a, scores_b, self.temperature)
        return PairPrediction(p_a=members.mean(0), spread=members.std(0), members=members)

    def to_reward_model(self):
        """A :class:`rewards.model.RewardModel` (the frozen backbone with this head) to save and score with."""
        from .model import RewardModel, RewardModelConfig

        config = RewardModelConfig(backbone=self.features.backbone, trainable_layers=0)
        return RewardModel(self.features.clip, self.features.processor, config, head=self.ensemble)

    def save(self, path: str | os.PathLike[str]):
        """Save as a reward model folder (``RewardFunction.from_directory`` scores with it)."""
        return self.to_reward_model().save(path)


def fit_quick_reward_model(
    pairs: Sequence[PreferencePair],
    *,
    backbone: str | os.PathLike[str] | None = None,
    head: str = DEFAULT_HEAD,
    ensemble_size: int = 5,
    seed: int = 0,
    features: FeatureCache | None = None,
    image_keys_a: Sequence[Hashable] | None = None,
    image_keys_b: Sequence[Hashable] | None = None,
    val_pairs: Sequence[PreferencePair] | None = None,
    val_keys_a: Sequence[Hashable] | None = None,
    val_keys_b: Sequence[Hashable] | None = None,
    calibrate: bool = True,
    bootstrap: bool = True,
    config: HeadConfig | None = None,
    **head_settings: Any,
) -> QuickRewardModel:
    """Fit a head ensemble on ``pairs`` over frozen ``backbone`` features (see the module docstring).

    ``features``: a cache to reuse (its backbone is used; ``backbone`` may then be omitted). ``config`` (or
    ``head`` plus ``head_settings``, the :class:`~rewards.heads.HeadConfig` fields) chooses the head.
    ``val_pairs``: calibrate the temperature there (else out of bag).
    """
    if head not in HEAD_KINDS:
        raise ValueError(f"head must be one of {', '.join(HEAD_KINDS)} (got {head!r})")
    if ensemble_size < 1:
        raise ValueError(f"ensemble_size must be ≥ 1 (got {ensemble_size})")
    check_training_pairs(pairs, "training")
    if features is None:
        if backbone is None:
            raise ValueError("fit_quick_reward_model needs a backbone or a FeatureCache")
        features = FeatureCache(backbone)
    config = replace(config or HeadConfig(kind=head), **head_settings) if head_settings else config
    config = config or HeadConfig(kind=head)
    train = pair_table(features, pairs, image_keys_a, image_keys_b)
    val = pair_table(features, val_pairs, val_keys_a, val_keys_b) if val_pairs else None
    ensemble, summary = fit_head_ensemble(
        train, config, ensemble_size=ensemble_size, seed=seed, bootstrap=bootstrap, val=val, calibrate=calibrate
    )
    return QuickRewardModel(ensemble, features, summary)

"""Choosing a reward head by k-fold cross-validation over prompts. No Django imports.

A heads search on a few hundred votes that ranks its candidates on the validation split ranks them on a handful of
prompts: two heads a few points apart swap places from one seed to the next, and the wrong pick then decides
what the fine-tune learns. Cross-validation ranks every candidate on all the training and validation votes
instead: the pairs are dealt into ``k`` folds by prompt (a prompt's pairs share images, so they never straddle
folds), one head member is fitted on the other folds and scores the held-out fold, and the pooled out-of-fold
predictions (one temperature fitted on them) give the candidate's accuracy and log-loss. It costs one ensemble
fit per candidate for five folds, what a validation-ranked search spends; the winner is then fitted as usual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .heads import HeadConfig
from .metrics import choose_threshold, evaluate_predictions
from .quick import PairTable, fit_head_ensemble, fit_temperature

__all__ = ["CrossValidation", "cross_validate_head", "prompt_folds"]


def prompt_folds(prompt_rows: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """The pair rows dealt into ``folds`` groups, each prompt's rows in one group (prompts shuffled by ``seed``,
    then dealt in turn); fewer groups when there are fewer prompts, none when there is only one."""
    prompts = torch.unique(prompt_rows)
    count = min(folds, len(prompts))
    if count < 2:
        return []
    order = prompts[torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))]
    fold_of = torch.empty(int(prompts.max()) + 1, dtype=torch.long)
    fold_of[order] = torch.arange(len(order)) % count
    assignment = fold_of[prompt_rows]
    return [torch.nonzero(assignment == fold).flatten() for fold in range(count)]


@dataclass(frozen=True)
class CrossValidation:
    """A head's out-of-fold figures: ``p_a`` per pair, ``metrics`` (as :func:`rewards.metrics.evaluate_predictions`
    at the tie threshold best for them), the pooled ``temperature``, the number of ``folds`` and ``seconds``."""

    p_a: np.ndarray
    metrics: dict[str, Any]
    temperature: float
    folds: int
    seconds: float


def cross_validate_head(table: PairTable, head: HeadConfig, folds: list[torch.Tensor], seed: int) -> CrossValidation:
    """Fit one member of ``head`` per fold on the other folds' pairs of ``table`` and pool its held-out scores."""
    if len(folds) < 2:
        raise ValueError("cross-validation needs at least two folds")
    began = time.perf_counter()
    differences = torch.full((len(table),), float("nan"), dtype=torch.float64)
    everything = torch.arange(len(table))
    for index, held_out in enumerate(folds):
        kept = torch.ones(len(table), dtype=torch.bool)
        kept[held_out] = False
        member, _ = fit_head_ensemble(
            table.subset(everything[kept]), head, ensemble_size=1, seed=seed + index, calibrate=False
        )
        scores_a, scores_b = table.subset(held_out).scores(member)
        differences[held_out] = (scores_a[0] - scores_b[0]).double()
    if torch.isnan(differences).any():
        raise ValueError("the folds must cover every pair of the table")
    labels = table.label_a.numpy()
    diff = differences.numpy()[None]
    temperature = fit_temperature(diff, np.zeros_like(diff), labels)
    p_a = 1.0 / (1.0 + np.exp(-np.clip(diff[0] / temperature, -60, 60)))
    threshold, _ = choose_threshold(p_a, labels)
    return CrossValidation(
        p_a=p_a,
        metrics=evaluate_predictions(p_a, labels, threshold),
        temperature=float(temperature),
        folds=len(folds),
        seconds=time.perf_counter() - began,
    )

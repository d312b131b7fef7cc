"""A campaign's refit: hand-out priorities and a learning curve from its votes so far. No Django imports.

Given the campaign's votes (in the order they came) and the pairs that still need votes, :func:`refit_campaign`

- holds out a prompt-disjoint share of the votes (``test_fraction`` of the prompts) and fits a quick reward model
  (``rewards.quick``) on the training prompts' votes among the first n votes, for a few n up to all of them: the
  learning curve, held-out decisive accuracy against the number of votes (the last point is the model of today);
- measures zero-shot accuracy (the frozen backbone's own score) on the same held-out votes, and the human ceiling
  (leave-one-out decisive agreement on pairs with several votes, ``rewards.metrics.human_ceiling``);
- fits on every vote and turns its predictions on the open pairs into priorities
  (``rewards.active.uncertainty_priority``); with too few votes to fit, the zero-shot predictions (no spread).

Images are named by id: the caller puts their features in the :class:`~rewards.features.FeatureCache` first
(:func:`cache_images`), so a refit computes features only for images it has not seen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .active import uncertainty_priority
from .data import PreferencePair, RewardDataError, labels_for_choice, split_by_prompt
from .features import FeatureCache
from .metrics import decisive_accuracy, human_ceiling, votes_by_pair
from .quick import DEFAULT_HEAD, fit_quick_reward_model, pair_table

__all__ = [
    "CurvePoint",
    "RefitOutcome",
    "RefitSettings",
    "cache_images",
    "refit_campaign",
]


@dataclass(frozen=True)
class Vote:
    """A vote against the pair's images (``choice``: a, b, tie, both_bad)."""

    pair: int
    prompt: str
    image_a: int
    image_b: int
    choice: str
    annotator: Hashable = None


@dataclass(frozen=True)
class OpenPair:
    pair: int
    prompt: str
    image_a: int
    image_b: int


@dataclass(frozen=True)
class RefitSettings:
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    test_fraction: float = 0.2
    min_votes: int = 20  # fewer decisive training votes: no fit (zero-shot priorities, no curve point)
    ensemble_size: int = 5
    head: str = DEFAULT_HEAD
    seed: int = 0


@dataclass(frozen=True)
class CurvePoint:
    votes: int  # the first ``votes`` votes of the campaign
    train_votes: int  # of which on training prompts (the rest are held out)
    accuracy: float | None  # decisive accuracy on the held-out votes


@dataclass
class RefitOutcome:
    used_votes: int
    test_votes: int
    points: list[CurvePoint]
    zero_shot_accuracy: float | None
    human_ceiling: float | None
    ceiling_pairs: int
    priorities: dict[int, float]
    priority_source: str  # "model", "zero_shot" or "none" (no open pair)
    seconds: dict[str, float] = field(default_factory=dict)


def cache_images(features: FeatureCache, ids: Sequence[int], load: Callable[[int], bytes], known: set[int]) -> int:
    """Compute the features of the images ``ids`` not in ``known`` (``load`` reads an image's file); returns how
    many were computed. ``known`` is updated: keep one per cache."""
    todo = sorted(set(ids) - known)
    for start in range(0, len(todo), 256):
        chunk = todo[start : start + 256]
        features.keys_for([load(pk) for pk in chunk], chunk)
        known.update(chunk)
    return len(todo)


def _pairs(votes: Sequence[Vote]) -> tuple[list[PreferencePair], list[int], list[int]]:
    pairs, keys_a, keys_b = [], [], []
    for vote in votes:
        labels = labels_for_choice(vote.choice)
        if labels is None:
            continue
        annotator = None if vote.annotator is None else str(vote.annotator)
        pairs.append(PreferencePair(vote.prompt, None, None, *labels, annotator, str(vote.pair)))
        keys_a.append(vote.image_a)
        keys_b.append(vote.image_b)
    return pairs, keys_a, keys_b


def _decisive(pairs: Sequence[PreferencePair]) -> int:
    return sum(not p.is_tie for p in pairs)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _fit(features: FeatureCache, pairs, keys_a, keys_b, settings: RefitSettings):
    return fit_quick_reward_model(
        pairs,
        features=features,
        head=settings.head,
        ensemble_size=settings.ensemble_size,
        seed=settings.seed,
        image_keys_a=keys_a,
        image_keys_b=keys_b,
    )


def _curve(features: FeatureCache, pairs, keys_a, keys_b, settings: RefitSettings):
    """(points, zero-shot accuracy, decisive test votes): fits on growing prefixes of the training prompts' votes."""
    try:
        splits = split_by_prompt(pairs, val_fraction=0.0, test_fraction=settings.test_fraction, seed=settings.seed)
    except RewardDataError:
        return [], None, 0
    test_prompts = {p.prompt for p in splits.test}
    in_test = [p.prompt in test_prompts for p in pairs]
    test = [i for i, t in enumerate(in_test) if t]
    test_pairs = [pairs[i] for i in test]
    labels = np.array([p.label_a for p in test_pairs])
    table = pair_table(features, test_pairs, [keys_a[i] for i in test], [keys_b[i] for i in test])
    zero_shot = _nan_to_none(decisive_accuracy(table.zero_shot_p_a(features.logit_scale), labels))
    points = []
    for n in sorted({max(1, math.ceil(f * len(pairs))) for f in settings.fractions}):
        train = [i for i in range(n) if not in_test[i]]
        train_pairs = [pairs[i] for i in train]
        accuracy = None
        if _decisive(train_pairs) >= settings.min_votes and _decisive(test_pairs):
            model = _fit(features, train_pairs, [keys_a[i] for i in train], [keys_b[i] for i in train], settings)
            accuracy = _nan_to_none(decisive_accuracy(model.predict_table(table).p_a, labels))
        points.append(CurvePoint(votes=n, train_votes=len(train), accuracy=accuracy))
    return points, zero_shot, _decisive(test_pairs)


@dataclass(frozen=True)
class _Prediction:
    p_a: np.ndarray
    spread: np.ndarray


def refit_campaign(
    votes: Sequence[Vote],
    open_pairs: Sequence[OpenPair],
    features: FeatureCache,
    settings: RefitSettings,
    *,
    priorities: bool = True,
) -> RefitOutcome:
    """The campaign's curve, ceiling and (with ``priorities``: uncertainty campaigns) priorities, see the module
    docstring; images must be in ``features``. Without ``priorities`` the fit on every vote is skipped."""
    began = time.perf_counter()
    pairs, keys_a, keys_b = _pairs(votes)
    points, zero_shot, test_votes = _curve(features, pairs, keys_a, keys_b, settings)
    curve_done = time.perf_counter()
    ceiling = human_ceiling(votes_by_pair(pairs))
    wanted, priorities, source = priorities, {}, "none"
    if open_pairs and wanted:
        prompts = [p.prompt for p in open_pairs]
        ids_a, ids_b = [p.image_a for p in open_pairs], [p.image_b for p in open_pairs]
        if _decisive(pairs) >= settings.min_votes:
            model = _fit(features, pairs, keys_a, keys_b, settings)
            prediction = model.predict_pairs(prompts, [None] * len(prompts), [None] * len(prompts), ids_a, ids_b)
            source = "model"
        else:
            todo = [PreferencePair(p.prompt, None, None, 0.5, 0.5) for p in open_pairs]
            p_a = pair_table(features, todo, ids_a, ids_b).zero_shot_p_a(features.logit_scale)
            prediction, source = _Prediction(p_a=p_a, spread=np.zeros_like(p_a)), "zero_shot"
        values = uncertainty_priority(prediction)
        priorities = {p.pair: float(v) for p, v in zip(open_pairs, values, strict=True)}
    return RefitOutcome(
        used_votes=len(pairs),
        test_votes=test_votes,
        points=points,
        zero_shot_accuracy=zero_shot,
        human_ceiling=_nan_to_none(ceiling["decisive_agreement"]),
        ceiling_pairs=int(ceiling["pairs"]),
        priorities=priorities,
        priority_source=source,
        seconds={
            "curve": round(curve_done - began, 3),
            "priorities": round(time.perf_counter() - curve_done, 3),
        },
    )

"""Annotator quality math for pairwise image votes (plain Python + numpy, no Django).

Votes
-----
Every function taking ``votes`` accepts an iterable of :class:`Vote`, of mappings with the same keys
(``{"annotator": 7, "pair": 12, "choice": "a", "first_side": "left", "seconds": 3.2}``; ``first_side`` and
``seconds`` may be omitted) or of tuples in field order ``(annotator, pair, choice[, first_side[, seconds]])``.

``choice`` is one of :data:`CHOICES` and is expressed against the pair's two *images*: ``"a"`` is the pair's
first image and ``"b"`` its second, whichever side each was shown on. ``first_side`` records where image a was
shown (``"left"``/``"right"``, or ``None`` when unknown), which is what position bias is measured from.

Conventions
-----------
* ``"skip"`` votes carry no judgement: they are ignored by every statistic here except the vote counts.
* Consensus statistics (:func:`units_from_votes`, :func:`majority_labels`, :func:`agreement_with_majority`) use
  one judgement per annotator and pair: when an annotator judged a pair more than once, their *last* non-skip
  vote (in input order) counts. Gold accuracy, position bias and timing count every vote.
* "Majority" is the plurality choice among non-skip votes; a tie for the top count has no majority (``None``).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "CHOICES",
    "DECISIVE",
    "JUDGEMENTS",
    "Vote",
    "agreement_with_majority",
    "annotator_quality_table",
    "flag_annotators",
    "gold_accuracy",
    "krippendorff_alpha",
    "left_choice_rate",
    "majority_labels",
    "median_seconds",
    "units_from_votes",
]

CHOICES: tuple[str, ...] = ("a", "b", "tie", "both_bad", "skip")
JUDGEMENTS: frozenset[str] = frozenset({"a", "b", "tie", "both_bad"})
DECISIVE: frozenset[str] = frozenset({"a", "b"})
SIDES = frozenset({"left", "right"})

Level = Literal["nominal", "ordinal", "interval", "ratio"]
GoldAccuracy = tuple[int, int, float]


@dataclass(frozen=True, slots=True)
class Vote:
    """One annotator's judgement of one comparison pair.

    ``first_side`` is where image a was shown ("left"/"right", ``None`` if unknown); ``seconds`` is the time
    the annotator spent on the pair, if recorded.
    """

    annotator: Hashable
    pair: Hashable
    choice: str
    first_side: str | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise ValueError(f"unknown choice {self.choice!r}; expected one of {CHOICES}")
        if self.first_side is not None and self.first_side not in SIDES:
            raise ValueError(f"unknown first_side {self.first_side!r}; expected 'left', 'right' or None")

    @property
    def chose_left(self) -> bool | None:
        """Whether a decisive vote picked the image shown on the left (``None`` if not decisive or side unknown)."""
        if self.choice not in DECISIVE or self.first_side is None:
            return None
        return (self.choice == "a") == (self.first_side == "left")


VoteLike = Vote | Mapping[str, Any] | Sequence[Any]


def _as_vote(vote: VoteLike) -> Vote:
    if isinstance(vote, Vote):
        return vote
    if isinstance(vote, Mapping):
        return Vote(
            annotator=vote["annotator"],
            pair=vote["pair"],
            choice=vote["choice"],
            first_side=vote.get("first_side"),
            seconds=vote.get("seconds"),
        )
    return Vote(*vote)


def _votes(votes: Iterable[VoteLike]) -> list[Vote]:
    return [_as_vote(v) for v in votes]


def _judgements(votes: Iterable[VoteLike]) -> dict[Hashable, dict[Hashable, str]]:
    """pair -> annotator -> that annotator's last non-skip choice on the pair."""
    by_pair: dict[Hashable, dict[Hashable, str]] = defaultdict(dict)
    for vote in _votes(votes):
        if vote.choice != "skip":
            by_pair[vote.pair][vote.annotator] = vote.choice
    return dict(by_pair)


def _plurality(choices: Iterable[str]) -> str | None:
    counts = Counter(choices).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


# --------------------------------------------------------------------------------------------------------------
# Krippendorff's alpha


def _is_missing(value: Any, exclude: Collection[Hashable]) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, Hashable) and value in exclude


def _delta_squared(level: Level, values: list[Any], n_c: np.ndarray) -> np.ndarray:
    """Squared difference function δ²(c, k) over the value list (Krippendorff 2011, section C)."""
    k = len(values)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "ordinal":
        # δ²(c,k) = (Σ_{g=c..k} n_g − (n_c + n_k)/2)² with values in rank order.
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        return (cum[hi + 1] - cum[lo] - (n_c[i] + n_c[j]) / 2.0) ** 2
    x = np.asarray(values, dtype=float)
    diff = x[:, None] - x[None, :]
    if level == "interval":
        return diff**2
    if level == "ratio":
        total = x[:, None] + x[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total == 0, 0.0, (diff / np.where(total == 0, 1.0, total)) ** 2)
    raise ValueError(f"unknown level {level!r}; expected nominal, ordinal, interval or ratio")


def krippendorff_alpha(
    units: Mapping[Hashable, Sequence[Any]],
    level: Level = "nominal",
    *,
    exclude: Collection[Hashable] = frozenset({"skip"}),
) -> float | None:
    """Krippendorff's alpha from the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's alpha").

    ``units`` maps each unit (e.g. a pair) to the values its coders gave it, one per coder. ``None``, NaN and any
    value in ``exclude`` (by default the ``"skip"`` choice) are treated as missing; units left with fewer than
    two values are not pairable and are dropped. ``level`` picks the difference function: ``"nominal"`` (what
    vote choices are), or ``"ordinal"``/``"interval"``/``"ratio"`` for sortable / numeric values.

    alpha = 1 − (n − 1) · Σ o_ck δ²_ck / Σ n_c n_k δ²_ck, where o is the coincidence matrix (each unit with m
    pairable values adds 1/(m − 1) per ordered pair of its values) and n_c its margins.

    Returns ``None`` when alpha is undefined: no unit has two pairable values, or every pairable value is the
    same category (expected disagreement 0 — there is no variation for agreement to be measured against).
    1.0 is perfect agreement, 0 chance-level agreement, below 0 systematic disagreement.
    """
    pairable = [
        vals for vals in ([v for v in raw if not _is_missing(v, exclude)] for raw in units.values()) if len(vals) >= 2
    ]
    if not pairable:
        return None
    seen = dict.fromkeys(v for vals in pairable for v in vals)
    values = sorted(seen) if level != "nominal" else list(seen)
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    coincidence = np.zeros((k, k))
    for vals in pairable:
        counts = np.bincount([index[v] for v in vals], minlength=k).astype(float)
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(vals) - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _delta_squared(level, values, n_c)
    expected = float((np.outer(n_c, n_c) * delta).sum())
    if expected <= 0.0:
        return None
    observed = float((coincidence * delta).sum())
    return 1.0 - (n - 1.0) * observed / expected


def units_from_votes(votes: Iterable[VoteLike]) -> dict[Hashable, list[str]]:
    """Alpha input from votes: pair -> non-skip choices, one per annotator (their last vote on the pair)."""
    return {pair: list(by_annotator.values()) for pair, by_annotator in _judgements(votes).items()}


# --------------------------------------------------------------------------------------------------------------
# Majority and leave-one-out agreement


def majority_labels(votes: Iterable[VoteLike]) -> dict[Hashable, str | None]:
    """pair -> plurality choice among its non-skip votes (one per annotator), ``None`` when the top is tied.

    Pairs with only skip votes are absent.
    """
    return {pair: _plurality(by_annotator.values()) for pair, by_annotator in _judgements(votes).items()}


def _majority_agreement_counts(votes: Iterable[VoteLike], min_votes: int) -> dict[Hashable, tuple[int, int]]:
    """annotator -> (matches, compared) against the leave-one-out majority."""
    counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for by_annotator in _judgements(votes).values():
        if len(by_annotator) < min_votes:
            continue
        for annotator, choice in by_annotator.items():
            others = _plurality(c for a, c in by_annotator.items() if a != annotator)
            if others is None:
                continue
            counts[annotator][0] += choice == others
            counts[annotator][1] += 1
    return {a: (m, c) for a, (m, c) in counts.items()}


def agreement_with_majority(votes: Iterable[VoteLike], *, min_votes: int = 3) -> dict[Hashable, float | None]:
    """annotator -> fraction of their judgements that match the majority of the *other* annotators.

    Only pairs with at least ``min_votes`` non-skip judgements (the annotator's own included) are used, so the
    leave-one-out majority rests on at least ``min_votes − 1`` other votes. Pairs whose leave-one-out majority
    is tied give no reference label and are left out of that annotator's denominator. Every annotator with a
    non-skip vote appears; the value is ``None`` when none of their votes could be compared.
    """
    vote_list = _votes(votes)
    counts = _majority_agreement_counts(vote_list, min_votes)
    annotators = dict.fromkeys(v.annotator for v in vote_list if v.choice != "skip")
    result: dict[Hashable, float | None] = {}
    for annotator in annotators:
        matches, compared = counts.get(annotator, (0, 0))
        result[annotator] = matches / compared if compared else None
    return result


# --------------------------------------------------------------------------------------------------------------
# Gold, position bias, timing, flagging


def gold_accuracy(votes: Iterable[VoteLike], gold: Mapping[Hashable, str]) -> dict[Hashable, GoldAccuracy]:
    """annotator -> (correct, total, accuracy) over their non-skip votes on gold pairs.

    Scoring is exact match: a vote scores 1 when its choice equals the gold choice and 0 otherwise (a ``"tie"``
    vote on a decisive gold pair scores 0, not 0.5). Skip votes are not counted. Every vote counts, so a gold
    pair shown twice to the same annotator counts twice. Annotators with no counted gold vote are absent.
    """
    for pair, choice in gold.items():
        if choice not in JUDGEMENTS:
            raise ValueError(f"gold choice for pair {pair!r} is {choice!r}; expected one of {sorted(JUDGEMENTS)}")
    tally: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for vote in _votes(votes):
        if vote.choice == "skip" or vote.pair not in gold:
            continue
        tally[vote.annotator][0] += vote.choice == gold[vote.pair]
        tally[vote.annotator][1] += 1
    return {a: (correct, total, correct / total) for a, (correct, total) in tally.items()}


def _left_counts(votes: Iterable[VoteLike]) -> dict[Hashable, tuple[int, int]]:
    counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for vote in _votes(votes):
        left = vote.chose_left
        if left is not None:
            counts[vote.annotator][0] += left
            counts[vote.annotator][1] += 1
    return {a: (left, total) for a, (left, total) in counts.items()}


def left_choice_rate(votes: Iterable[VoteLike]) -> dict[Hashable, float | None]:
    """annotator -> fraction of their decisive votes ("a"/"b") that picked the image shown on the left.

    0.5 is unbiased. Votes without ``first_side`` are ignored; ``None`` when an annotator has no decisive vote
    with a known side.
    """
    vote_list = _votes(votes)
    counts = _left_counts(vote_list)
    result: dict[Hashable, float | None] = {}
    for annotator in dict.fromkeys(v.annotator for v in vote_list):
        left, total = counts.get(annotator, (0, 0))
        result[annotator] = left / total if total else None
    return result


def median_seconds(votes: Iterable[VoteLike]) -> dict[Hashable, float | None]:
    """annotator -> median of the ``seconds`` of all their votes (skips included) that record it, else ``None``."""
    times: dict[Hashable, list[float]] = {}
    for vote in _votes(votes):
        bucket = times.setdefault(vote.annotator, [])
        if vote.seconds is not None and not math.isnan(vote.seconds):
            bucket.append(float(vote.seconds))
    return {a: float(statistics.median(ts)) if ts else None for a, ts in times.items()}


def flag_annotators(
    gold_acc: Mapping[Hashable, GoldAccuracy], threshold: float = 0.7, min_gold: int = 5
) -> set[Hashable]:
    """Annotators with at least ``min_gold`` counted gold votes whose gold accuracy is strictly below ``threshold``."""
    return {a for a, (_, total, accuracy) in gold_acc.items() if total >= min_gold and accuracy < threshold}


def _sort_key(value: Hashable) -> tuple[str, str]:
    return (type(value).__name__, str(value))


def annotator_quality_table(
    votes: Iterable[VoteLike],
    gold: Mapping[Hashable, str] | None = None,
    threshold: float = 0.7,
    min_gold: int = 5,
    *,
    min_votes: int = 3,
) -> list[dict[str, Any]]:
    """One JSON-serialisable row per annotator (sorted by annotator id) with every statistic in this module.

    Keys: ``annotator``, ``votes``, ``skips``, ``majority_agreement`` / ``majority_compared`` (leave-one-out,
    see :func:`agreement_with_majority`), ``gold_correct`` / ``gold_total`` / ``gold_accuracy``,
    ``left_choice_rate`` / ``decisive_votes`` (decisive votes with a known side), ``median_seconds`` and
    ``flagged`` (see :func:`flag_annotators`). Missing statistics are ``None``. ``annotator`` is the id as given,
    so it is JSON-serialisable when the ids are (ints or strings).
    """
    vote_list = _votes(votes)
    gold_acc = gold_accuracy(vote_list, gold or {})
    flagged = flag_annotators(gold_acc, threshold=threshold, min_gold=min_gold)
    majority = _majority_agreement_counts(vote_list, min_votes)
    left = _left_counts(vote_list)
    seconds = median_seconds(vote_list)
    totals = Counter(v.annotator for v in vote_list)
    skips = Counter(v.annotator for v in vote_list if v.choice == "skip")

    rows = []
    for annotator in sorted(totals, key=_sort_key):
        matches, compared = majority.get(annotator, (0, 0))
        correct, gold_total, accuracy = gold_acc.get(annotator, (0, 0, None))
        left_n, decisive = left.get(annotator, (0, 0))
        rows.append(
            {
                "annotator": annotator,
                "votes": totals[annotator],
                "skips": skips[annotator],
                "majority_agreement": matches / compared if compared else None,
                "majority_compared": compared,
                "gold_correct": correct,
                "gold_total": gold_total,
                "gold_accuracy": accuracy,
                "left_choice_rate": left_n / decisive if decisive else None,
                "decisive_votes": decisive,
                "median_seconds": seconds.get(annotator),
                "flagged": annotator in flagged,
            }
        )
    return rows

"""Reward-hacking audit (reads): pairs where the reward model strongly prefers one image and people chose the other.

For every regular pair of a campaign with decisive votes, the human majority (a or b, ties and both-bad left
out) is compared with the reward model's preference ``p_a = sigmoid(s_a − s_b)`` — its scores are logits, as in
PickScore. A pair is a disagreement when the model gives the side people rejected a probability ≥ ``margin``.
People's votes are read on the question the reward model learnt (its dataset's criterion) when the campaign asks
it, else on the campaign's first question.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from feedback.criteria import criteria_of
from feedback.models import Campaign, Choice, Pair, Vote
from rewards.models import ImageScore, RewardModel


@dataclass(frozen=True)
class Disagreement:
    pair: Pair
    human_choice: str  # "a" or "b": the image people preferred
    human_votes: int  # decisive votes for it
    decisive_votes: int
    model_probability: float  # the model's probability for the image people rejected
    score_a: float
    score_b: float


@dataclass(frozen=True)
class Audit:
    disagreements: list[Disagreement]
    pairs_compared: int  # pairs with a human majority and both scores
    pairs_unscored: int  # pairs with a human majority but a missing score


def _criterion(campaign: Campaign, reward_model: RewardModel) -> str:
    """The question to compare with: the reward model's dataset's criterion if the campaign asks it, else its first."""
    asked = criteria_of(campaign.questions)
    learnt = reward_model.dataset.criterion if reward_model.dataset_id else ""
    return learnt if learnt in asked else asked[0]


def _majorities(campaign: Campaign, criterion: str | None = None) -> dict[int, tuple[str, int, int]]:
    """Strict-majority choice of each non-gold pair on one question (the campaign's first unless named)."""
    criterion = criterion or criteria_of(campaign.questions)[0]
    counts: dict[int, Counter] = {}
    decisive = Vote.objects.filter(
        pair__campaign=campaign, pair__is_gold=False, criterion=criterion, choice__in=[Choice.A, Choice.B]
    )
    for pair_id, choice in decisive.values_list("pair_id", "choice"):
        counts.setdefault(pair_id, Counter())[choice] += 1
    majorities = {}
    for pair_id, counter in counts.items():
        (top, n), *rest = counter.most_common()
        if not rest or rest[0][1] < n:  # a strict majority
            majorities[pair_id] = (top, n, sum(counter.values()))
    return majorities


def reward_hacking_audit(campaign: Campaign, reward_model: RewardModel, *, margin: float = 0.8) -> Audit:
    """Disagreements sorted by the model's confidence, strongest first."""
    majorities = _majorities(campaign, _criterion(campaign, reward_model))
    pairs = Pair.objects.filter(pk__in=majorities).select_related("image_a__prompt", "image_b")
    images = {image for pair in pairs for image in (pair.image_a_id, pair.image_b_id)}
    scores = dict(
        ImageScore.objects.filter(reward_model=reward_model, image_id__in=images).values_list("image_id", "score")
    )
    found, compared, unscored = [], 0, 0
    for pair in pairs:
        if pair.image_a_id not in scores or pair.image_b_id not in scores:
            unscored += 1
            continue
        compared += 1
        choice, votes, decisive = majorities[pair.pk]
        s_a, s_b = scores[pair.image_a_id], scores[pair.image_b_id]
        p_a = 1.0 / (1.0 + math.exp(-(s_a - s_b)))
        rejected = p_a if choice == Choice.B else 1.0 - p_a
        if rejected >= margin:
            found.append(Disagreement(pair, choice, votes, decisive, rejected, s_a, s_b))
    found.sort(key=lambda d: -d.model_probability)
    return Audit(found, compared, unscored)

"""32 annotators in parallel threads exhaust a campaign: exactly k votes per pair, nothing lost or doubled.

On PostgreSQL this exercises SELECT ... FOR UPDATE SKIP LOCKED; on SQLite the serialised writers. Both hand-out
orders: ``random`` (creation order) and ``uncertainty`` (fresh pairs by priority, rewritten mid-campaign as the
refit job does).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from feedback import handout, services
from feedback.models import Assignment, Pair, Vote
from generators import services as generator_services
from generators.models import ModelVersion
from tests.conftest import make_user
from tests.support.images import store_images

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ANNOTATORS, PAIRS, K = 32, 40, 3
THREE_QUESTIONS = [{"key": key, "text": f"Which is {key}?"} for key in ("faithful", "pretty", "plausible")]


@pytest.mark.parametrize(
    ("selection", "questions"),
    [("random", None), ("uncertainty", None), ("random", THREE_QUESTIONS)],
    ids=["random", "uncertainty", "three-questions"],
)
def test_parallel_annotators_exhaust_a_campaign_exactly(django_user_model, settings, tmp_path, selection, questions):
    settings.MEDIA_ROOT = tmp_path
    base = generator_services.base_model_register(name="tiny", source="org/tiny")
    version = ModelVersion.objects.get(base_model=base)
    prompt_set = generator_services.prompt_set_create(name="p", split="train", prompts=[f"p{i}" for i in range(PAIRS)])
    for prompt in prompt_set.prompts.all():
        store_images(version, [(prompt, seed, f"{prompt.pk}/{seed}".encode()) for seed in (0, 1)])
    annotators = [make_user(django_user_model, "annotator", f"a{i}") for i in range(ANNOTATORS)]
    campaign = services.campaign_create(
        name="race",
        purpose="collect",
        prompt_set=prompt_set,
        model_versions=[version],
        annotators=annotators,
        votes_per_pair=K,
        selection=selection,
        questions=questions,
    )
    criteria = [q["key"] for q in campaign.questions]
    pair_ids = list(campaign.pairs.values_list("id", flat=True))
    priorities = random.Random(0)
    services.pair_priorities_set(campaign_id=campaign.pk, priorities={pk: priorities.random() for pk in pair_ids})
    errors: list[BaseException] = []
    start = threading.Barrier(ANNOTATORS + (selection == "uncertainty"))  # with the refit thread below

    def annotate(user, seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            idle = 0
            while idle < 200:
                assignment = handout.next_assignment(annotator=user, campaign=campaign, rng=rng)
                if assignment is None:
                    # Nothing for this annotator right now: pairs may come back when another annotator
                    # skips or lets a lease lapse. Stop once the campaign is complete.
                    if not Pair.objects.filter(campaign=campaign, valid_votes__lt=K).exists():
                        return
                    idle += 1
                    time.sleep(0.01)
                    continue
                idle = 0
                choice = rng.choice(["left", "right", "tie", "both_bad", "skip"])
                if questions and choice != "skip":  # every question answered at once, each its own choice
                    answers = {key: rng.choice(["left", "right", "tie", "both_bad"]) for key in criteria}
                    services.vote_submit(annotator=user, assignment_id=assignment.assignment, answers=answers)
                else:
                    services.vote_submit(annotator=user, assignment_id=assignment.assignment, submitted=choice)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def refit() -> None:
        """New priorities while the annotators work, a batch at a time (as the refit job writes them)."""
        try:
            start.wait()
            for round_ in range(5):
                time.sleep(0.05)
                services.pair_priorities_set(
                    campaign_id=campaign.pk, priorities={pk: priorities.random() + round_ for pk in pair_ids}
                )
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=annotate, args=(user, i)) for i, user in enumerate(annotators)]
    if selection == "uncertainty":
        threads.append(threading.Thread(target=refit))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not errors, errors[:3]
    assert all(not t.is_alive() for t in threads)
    assert {pair.pk: pair.valid_votes for pair in Pair.objects.all()} == {
        pk: K for pk in Pair.objects.values_list("id", flat=True)
    }
    for criterion in criteria:  # k valid answers to every question of every pair
        counted = Counter(
            Vote.objects.filter(criterion=criterion).exclude(choice="skip").values_list("pair_id", flat=True)
        )
        assert set(counted.values()) == {K} and len(counted) == PAIRS
    voted = Assignment.objects.filter(status="voted").count()
    assert Vote.objects.count() == voted * len(criteria) and voted == Assignment.objects.count()
    per_annotator_pair = Counter(Vote.objects.values_list("annotator_id", "pair_id", "criterion"))
    assert max(per_annotator_pair.values()) == 1
    per_assignment = Counter(Vote.objects.values_list("assignment_id", flat=True))
    assert set(per_assignment.values()) == {len(criteria)}  # all questions of a submission, or none

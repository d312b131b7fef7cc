"""Annotator quality math: Krippendorff's alpha, leave-one-out majority, gold accuracy, position bias, flags."""

from __future__ import annotations

import json

import pytest

from feedback.agreement import (
    Vote,
    agreement_with_majority,
    annotator_quality_table,
    flag_annotators,
    gold_accuracy,
    krippendorff_alpha,
    left_choice_rate,
    majority_labels,
    median_seconds,
    units_from_votes,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers x 12 units, values
# 1..5, "." = missing. Unit 12 has a single value, so it is not pairable; 40 pairable values remain.
#
#   unit:  1  2  3  4  5  6  7  8  9 10 11 12
#   A:     1  2  3  3  2  1  4  1  2  .  .  .
#   B:     1  2  3  3  2  2  4  1  2  5  .  3
#   C:     .  3  3  3  2  3  4  2  2  5  1  .
#   D:     1  2  3  3  2  4  4  1  2  5  1  .
#
# Coincidence matrix (each unit with m values adds 1/(m-1) per ordered pair of its values):
#
#          1     2     3     4    5  | n_c
#   1      7    4/3   1/3   1/3   0  |  9
#   2     4/3   10    4/3   1/3   0  | 13
#   3     1/3   4/3    8    1/3   0  | 10
#   4     1/3   1/3   1/3    4    0  |  5
#   5      0     0     0     0    3  |  3      n = 40
#
# Nominal: alpha = 1 - (n-1) * (n - sum o_cc) / (n^2 - sum n_c^2)
#                = 1 - 39 * (40 - 32) / (1600 - 384) = 1 - 312/1216 = 904/1216 = 0.7434...
# The paper also gives ordinal 0.815, interval 0.849 and ratio 0.797 for the same data.
_ = None
KRIPPENDORFF_DATA = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
}
KRIPPENDORFF_UNITS = {unit: [values[unit] for values in KRIPPENDORFF_DATA.values()] for unit in range(12)}


def test_alpha_matches_krippendorffs_worked_example():
    alpha = krippendorff_alpha(KRIPPENDORFF_UNITS)
    assert alpha == pytest.approx(904 / 1216)
    assert round(alpha, 3) == 0.743


@pytest.mark.parametrize(("level", "expected"), [("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_other_levels_match_the_paper(level, expected):
    assert round(krippendorff_alpha(KRIPPENDORFF_UNITS, level), 3) == expected


def test_alpha_perfect_agreement_is_one():
    units = {"p1": ["a", "a", "a"], "p2": ["b", "b"], "p3": ["tie", "tie", "tie"], "p4": ["a"]}
    assert krippendorff_alpha(units) == 1.0


def test_alpha_systematic_disagreement_is_negative():
    # Every unit has one "a" and one "b": o_ab = o_ba = 3, o_aa = o_bb = 0, n_a = n_b = 3, n = 6.
    # alpha = 1 - 5 * (6 - 0) / (36 - 18) = 1 - 30/18 = -2/3.
    units = {"p1": ["a", "b"], "p2": ["a", "b"], "p3": ["b", "a"]}
    assert krippendorff_alpha(units) == pytest.approx(-2 / 3)


def test_alpha_is_undefined_without_pairable_values_or_variation():
    assert krippendorff_alpha({}) is None
    assert krippendorff_alpha({"p1": ["a"], "p2": ["b", None], "p3": ["skip", "a"]}) is None
    assert krippendorff_alpha({"p1": ["a", "a"], "p2": ["a", "a", "a"]}) is None


def test_alpha_drops_skips_by_default_and_on_request_only():
    with_skips = {"p1": ["a", "a", "skip"], "p2": ["b", "b"], "p3": ["skip", "a", "b"]}
    assert krippendorff_alpha(with_skips) == krippendorff_alpha({"p1": ["a", "a"], "p2": ["b", "b"], "p3": ["a", "b"]})
    assert krippendorff_alpha(with_skips, exclude=()) != krippendorff_alpha(with_skips)


def test_alpha_rejects_unknown_level():
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha({"p1": [1, 2], "p2": [2, 2]}, "cardinal")


def test_units_from_votes_keep_one_non_skip_judgement_per_annotator():
    votes = [
        ("u1", "p1", "a"),
        ("u1", "p1", "b"),  # u1 changed their mind: the last vote counts
        ("u2", "p1", "b"),
        ("u3", "p1", "skip"),
        ("u3", "p2", "skip"),
    ]
    assert units_from_votes(votes) == {"p1": ["b", "b"]}


# Leave-one-out majority, by hand (E's only vote is on p3, which has too few votes):
#   p1: A=a B=a C=b D=a   A: others a,b,a -> a (match)   B: -> a (match)   C: a,a,a -> a (miss)   D: a,a,b -> a (match)
#   p2: A=b B=a C=a       A: others a,a -> a (miss)      B: b,a tied (not compared)   C: b,a tied (not compared)
#   p3: A=a E=b           only 2 non-skip votes: not used
#   p4: A=a B=b C=tie D=skip   every leave-one-out majority is tied: not compared
#   => A 1/2, B 1/1, C 0/1, D 1/1, E None
LOO_VOTES = [
    ("A", "p1", "a"),
    ("B", "p1", "a"),
    ("C", "p1", "b"),
    ("D", "p1", "a"),
    ("A", "p2", "b"),
    ("B", "p2", "a"),
    ("C", "p2", "a"),
    ("A", "p3", "a"),
    ("E", "p3", "b"),
    ("A", "p4", "a"),
    ("B", "p4", "b"),
    ("C", "p4", "tie"),
    ("D", "p4", "skip"),
]


def test_majority_labels_are_plurality_and_none_when_tied():
    assert majority_labels(LOO_VOTES) == {"p1": "a", "p2": "a", "p3": None, "p4": None}
    assert majority_labels([("A", "p9", "skip")]) == {}


def test_agreement_with_majority_leaves_the_annotators_own_vote_out():
    assert agreement_with_majority(LOO_VOTES) == {"A": 0.5, "B": 1.0, "C": 0.0, "D": 1.0, "E": None}


def test_votes_may_be_dataclasses_dicts_or_tuples():
    as_dicts = [{"annotator": a, "pair": p, "choice": c} for a, p, c in LOO_VOTES]
    as_votes = [Vote(a, p, c) for a, p, c in LOO_VOTES]
    expected = agreement_with_majority(LOO_VOTES)
    assert agreement_with_majority(as_dicts) == expected == agreement_with_majority(as_votes)
    with pytest.raises(ValueError, match="unknown choice"):
        Vote("A", "p1", "left")
    with pytest.raises(ValueError, match="first_side"):
        Vote("A", "p1", "a", "top")


GOLD = {"g1": "a", "g2": "b", "g3": "tie"}


def test_gold_accuracy_counts_exact_matches_only():
    votes = [
        ("X", "g1", "a"),  # 1
        ("X", "g2", "tie"),  # 0: a tie on a decisive gold pair is wrong
        ("X", "g3", "tie"),  # 1
        ("X", "g1", "b"),  # 0: the repeated gold pair counts again
        ("X", "g2", "skip"),  # not counted
        ("X", "p1", "a"),  # not a gold pair
        ("Y", "g1", "skip"),  # Y has no counted gold vote
    ]
    assert gold_accuracy(votes, GOLD) == {"X": (2, 4, 0.5)}
    with pytest.raises(ValueError, match="gold choice"):
        gold_accuracy(votes, {"g1": "skip"})


def test_left_choice_rate_measures_position_bias():
    votes = [
        Vote("L", "p1", "a", "left"),  # left
        Vote("L", "p2", "b", "right"),  # b was on the left: left
        Vote("L", "p3", "a", "left"),  # left
        Vote("L", "p4", "a", "right"),  # right
        Vote("L", "p5", "tie", "left"),  # not decisive
        Vote("L", "p6", "a", None),  # side unknown
        Vote("N", "p1", "tie", "left"),
        Vote("N", "p2", "skip", "right"),
    ]
    assert left_choice_rate(votes) == {"L": 0.75, "N": None}


def test_median_seconds():
    votes = [Vote("A", "p1", "a", seconds=3), Vote("A", "p2", "b", seconds=9), Vote("A", "p3", "skip", seconds=1)]
    votes += [Vote("B", "p1", "a")]
    assert median_seconds(votes) == {"A": 3.0, "B": None}


def test_flag_annotators_thresholds():
    gold_acc = {
        "low": (3, 5, 0.6),  # enough gold, below threshold: flagged
        "edge": (7, 10, 0.7),  # exactly at the threshold: not flagged
        "few": (0, 4, 0.0),  # too few gold votes to judge
        "good": (9, 10, 0.9),
    }
    assert flag_annotators(gold_acc) == {"low"}
    assert flag_annotators(gold_acc, threshold=0.75) == {"low", "edge"}
    assert flag_annotators(gold_acc, min_gold=4) == {"low", "few"}
    assert flag_annotators({}) == set()


def test_quality_table_rows_are_json_serialisable_and_complete():
    gold = {f"g{i}": "a" for i in range(5)}
    votes = [Vote("bad", f"g{i}", "b", "left", seconds=1.0) for i in range(4)]
    votes += [Vote("bad", "g4", "a", "left", seconds=2.0), Vote("bad", "g4", "skip")]
    votes += [Vote("good", f"g{i}", "a", "right" if i % 2 else "left", seconds=5.0) for i in range(5)]
    votes += [Vote(3, f"g{i}", "a", "left") for i in range(5)]
    rows = annotator_quality_table(votes, gold, threshold=0.7, min_gold=5)
    json.dumps(rows)
    by_id = {row["annotator"]: row for row in rows}
    assert [row["annotator"] for row in rows] == [3, "bad", "good"]
    assert by_id["bad"] == {
        "annotator": "bad",
        "votes": 6,
        "skips": 1,
        "majority_agreement": 0.2,  # only g4 (its last non-skip vote, "a") matches the others
        "majority_compared": 5,
        "gold_correct": 1,
        "gold_total": 5,
        "gold_accuracy": 0.2,
        "left_choice_rate": 0.2,
        "decisive_votes": 5,
        "median_seconds": 1.0,
        "flagged": True,
    }
    assert by_id["good"]["flagged"] is False
    assert by_id["good"]["gold_accuracy"] == 1.0
    assert by_id["good"]["left_choice_rate"] == 0.6
    assert (by_id["good"]["majority_agreement"], by_id["good"]["majority_compared"]) == (1.0, 1)  # g0-g3 tied
    assert by_id[3]["median_seconds"] is None


def test_quality_table_without_gold():
    rows = annotator_quality_table(LOO_VOTES)
    assert {row["annotator"]: row["gold_accuracy"] for row in rows} == dict.fromkeys("ABCDE")
    assert not any(row["flagged"] for row in rows)
    assert {row["annotator"]: row["majority_agreement"] for row in rows} == agreement_with_majority(LOO_VOTES)

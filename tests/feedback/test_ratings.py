"""Tests for feedback.ratings: Bradley–Terry fit, bootstrap coverage, leaderboard rules and input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from feedback.ratings import (
    DEFAULT_PRIOR,
    Verdict,
    arena_rank,
    bootstrap_intervals,
    display_rating,
    fit_bradley_terry,
    head_to_head,
    leaderboard,
)

WEIGHT = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}


def simulate(strengths, n_votes: int, rng: np.random.Generator, tie_rate: float = 0.1, names=None) -> list:
    """Votes between random pairs: a tie with probability tie_rate, else a win chosen so that the expected
    half-win score of a is exactly sigmoid(s_a - s_b) (the estimand of the half-win Bradley–Terry fit)."""
    s = np.asarray(strengths, dtype=float)
    k = len(s)
    names = list(range(k)) if names is None else names
    a = rng.integers(k, size=n_votes)
    b = (a + rng.integers(1, k, size=n_votes)) % k
    p = expit(s[a] - s[b])
    q = (p - tie_rate / 2) / (1 - tie_rate)
    assert (q >= 0).all() and (q <= 1).all()
    tie = rng.random(n_votes) < tie_rate
    a_wins = rng.random(n_votes) < q
    outcome = np.where(tie, "tie", np.where(a_wins, "a", "b"))
    return [(names[x], names[y], str(o)) for x, y, o in zip(a.tolist(), b.tolist(), outcome, strict=True)]


def penalised_nll(votes, models, prior: float):
    """The penalised negative log-likelihood and its gradient, written per vote (independently of the module)."""
    index = {m: k for k, m in enumerate(models)}
    a = np.array([index[v[0]] for v in votes])
    b = np.array([index[v[1]] for v in votes])
    w = np.array([WEIGHT[v[2]] for v in votes])
    k = len(models)

    def nll(s):
        d = s[a] - s[b]
        value = -(w * log_expit(d) + (1 - w) * log_expit(-d)).sum() + 0.5 * prior * s @ s
        r = w - expit(d)
        return value, -(np.bincount(a, r, k) - np.bincount(b, r, k)) + prior * s

    return nll


def scipy_fit(votes, models, prior: float) -> np.ndarray:
    """Independent reference solution: L-BFGS-B on the same objective, then the same mean-zero normalisation."""
    options = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000}
    res = minimize(
        penalised_nll(votes, models, prior), np.zeros(len(models)), jac=True, method="L-BFGS-B", options=options
    )
    return res.x - res.x.mean()


# 1. agreement with an independent solver ------------------------------------------------------------------------


def test_fit_matches_scipy_and_recovers_order():
    true = np.array([-1.0, -0.4, 0.0, 0.5, 1.2])
    names = ["m0", "m1", "m2", "m3", "m4"]
    votes = simulate(true, 4000, np.random.default_rng(42), names=names)
    fit = fit_bradley_terry(votes)
    ours = np.array([fit[m] for m in names])
    ref = scipy_fit(votes, names, DEFAULT_PRIOR)
    print(f"max |ours - scipy| = {np.abs(ours - ref).max():.2e}")
    assert np.abs(ours - ref).max() < 1e-3
    assert abs(ours.mean()) < 1e-12
    assert list(np.argsort(ours)) == list(np.argsort(true))
    nll = penalised_nll(votes, names, DEFAULT_PRIOR)
    assert nll(ours)[0] <= nll(ref)[0] + 1e-9  # ours is the optimum, not just close to it


def test_fit_is_stationary_on_ten_models_ten_thousand_votes():
    """10 models x 10,000 votes: the independently written gradient vanishes at the fit (converged to 1e-8)."""
    rng = np.random.default_rng(7)
    true = rng.normal(0, 0.8, 10)
    votes = simulate(np.clip(true, -1.4, 1.4), 10_000, rng)
    fit = fit_bradley_terry(votes)
    s = np.array([fit[m] for m in range(10)])
    _, grad = penalised_nll(votes, list(range(10)), DEFAULT_PRIOR)(s)
    assert np.abs(grad).max() < 1e-8
    ref = scipy_fit(votes, list(range(10)), DEFAULT_PRIOR)
    print(f"max |ours - scipy| = {np.abs(s - ref).max():.2e} (10 models)")
    assert np.abs(s - ref).max() < 1e-3


# 2. hand-computed examples -----------------------------------------------------------------------------------------


def test_three_wins_one_loss_gives_log_three():
    votes = [("A", "B", "a")] * 3 + [("A", "B", "b")]
    fit = fit_bradley_terry(votes)
    assert fit["A"] - fit["B"] == pytest.approx(math.log(3), abs=1e-5)
    assert fit["A"] == pytest.approx(-fit["B"], abs=1e-12)
    exact = fit_bradley_terry(votes, prior=0.0)
    assert exact["A"] - exact["B"] == pytest.approx(math.log(3), abs=1e-12)


def test_a_tie_counts_half_a_win_each():
    votes = [("A", "B", "a")] * 3 + [("B", "A", "a"), ("A", "B", "tie")]
    fit = fit_bradley_terry(votes, prior=0.0)
    assert fit["A"] - fit["B"] == pytest.approx(math.log(3.5 / 1.5), abs=1e-12)


def test_cycle_gives_equal_strengths_and_reference_shifts():
    votes = [("A", "B", "a"), ("B", "C", "a"), ("C", "A", "a")]
    fit = fit_bradley_terry(votes)
    assert all(abs(v) < 1e-12 for v in fit.values())
    skewed = [("A", "B", "a")] * 3 + [("B", "A", "a"), ("B", "C", "a"), ("C", "B", "a")]
    mean0 = fit_bradley_terry(skewed)
    ref = fit_bradley_terry(skewed, reference="B")
    assert ref["B"] == 0.0
    for m in "ABC":
        assert ref[m] == pytest.approx(mean0[m] - mean0["B"], abs=1e-12)


def test_unbeaten_model_stays_finite_and_display_scale():
    fit = fit_bradley_terry([("A", "B", "a")] * 20)
    assert all(math.isfinite(v) for v in fit.values()) and fit["A"] > 5
    assert display_rating(0.0) == 1000.0
    assert display_rating(math.log(10)) == pytest.approx(1400.0)
    with pytest.raises(RuntimeError, match="prior > 0"):
        fit_bradley_terry([("A", "B", "a")] * 3, prior=0.0)
    with pytest.raises(RuntimeError, match="prior > 0"):
        fit_bradley_terry([("A", "B", "a"), ("B", "A", "a"), ("B", "C", "a")], prior=0.0)


# 3. coverage ---------------------------------------------------------------------------------------------------------


def test_win_probability_interval_covers_at_nominal_rate():
    """200 datasets of 300 votes between 3 models, 200 resamples each: the 95% interval of P(0 beats 1) covers."""
    true = np.array([0.0, 0.3, 0.8])
    truth = {(i, j): expit(true[i] - true[j]) for i in range(3) for j in range(3) if i != j}
    rng = np.random.default_rng(2024)
    hits = {(0, 1): 0, (0, 2): 0, (1, 2): 0}
    n_datasets = 200
    for k in range(n_datasets):
        votes = simulate(true, 300, rng)
        boot = bootstrap_intervals(votes, n_resamples=200, seed=k)
        for pair in hits:
            lo, hi = boot.win_probability[pair]
            hits[pair] += lo <= truth[pair] <= hi
    coverage = hits[(0, 1)] / n_datasets
    pooled = sum(hits.values()) / (3 * n_datasets)
    print(f"coverage P(0 beats 1): {coverage:.3f}; pooled over the 3 pairs: {pooled:.3f}")
    assert 0.88 <= coverage <= 0.99
    assert 0.88 <= pooled <= 0.99


# 4. leaderboard rules, options, determinism, errors -------------------------------------------------------------


def test_arena_rank_rule():
    intervals = {"A": (1.0, 2.0), "B": (0.5, 1.5), "C": (-1.0, 0.4), "D": (-1.0, 0.6)}
    assert arena_rank(intervals) == {"A": 1, "B": 1, "C": 3, "D": 2}


def test_leaderboard_ranks_follow_the_rule():
    rng = np.random.default_rng(3)
    votes = simulate([-1.0, 0.0, 0.05, 1.0], 2000, rng, names=["w", "x", "y", "z"])
    board = leaderboard(votes, n_resamples=300)
    rows = {r["model"]: r for r in board["models"]}
    assert arena_rank({m: tuple(r["strength_interval"]) for m, r in rows.items()}) == {
        m: r["rank"] for m, r in rows.items()
    }
    assert rows["z"]["rank"] == 1 and rows["x"]["rank"] == rows["y"]["rank"] == 2 and rows["w"]["rank"] == 4
    assert [r["model"] for r in board["models"]][0] == "z"
    r = rows["z"]
    assert r["votes"] == r["wins"] + r["losses"] + r["ties"]
    assert r["rating"] == pytest.approx(display_rating(r["strength"]))
    json.dumps(board)


def test_both_bad_counts_as_tie_or_is_excluded_and_skips_are_ignored():
    base = [("A", "B", "a")] * 5 + [("B", "A", "a")] * 3 + [("A", "C", "b")] * 2 + [("C", "B", "a")] * 2
    with_bb = base + [("A", "B", "both_bad")] * 4 + [("C", "A", "skip")] * 7
    as_ties = base + [("A", "B", "tie")] * 4
    assert fit_bradley_terry(with_bb) == pytest.approx(fit_bradley_terry(as_ties), abs=1e-12)
    assert fit_bradley_terry(with_bb, both_bad="exclude") == pytest.approx(fit_bradley_terry(base), abs=1e-12)
    board = leaderboard(with_bb, n_resamples=100)
    assert board["votes"] == {"used": 16, "skipped": 7, "both_bad": 4, "both_bad_excluded": 0}
    assert {r["model"]: r["ties"] for r in board["models"]} == {"A": 4, "B": 4, "C": 0}
    board_ex = leaderboard(with_bb, n_resamples=100, both_bad="exclude")
    assert board_ex["votes"]["used"] == 12 and board_ex["votes"]["both_bad_excluded"] == 4
    plain = leaderboard(base, n_resamples=100)
    strip = lambda b: (b["models"], b["pairs"], b["matrix"])  # noqa: E731
    assert strip(board_ex) == strip(plain)


def test_verdicts():
    clear = [("A", "B", "a")] * 80 + [("A", "B", "b")] * 20
    (pair,) = leaderboard(clear, n_resamples=300)["pairs"]
    assert pair["verdict"] is Verdict.A_BETTER and pair["enough_votes"] and pair["winner"] == "A"
    assert pair["verdict_text"] == "A beats B"
    assert pair["wins_a"] == 80 and pair["win_rate_a"] == 0.8 and pair["p_interval"][0] > 0.5
    close = [("A", "B", "a")] * 3 + [("B", "A", "a")] * 2
    (pair,) = leaderboard(close, n_resamples=300)["pairs"]
    assert pair["verdict"] is Verdict.UNDECIDED and not pair["enough_votes"] and pair["winner"] is None
    assert pair["verdict_text"] == "not enough votes to tell A and B apart (5 votes)"
    reverse = [("A", "B", "b")] * 30 + [("A", "B", "a")] * 5 + [("A", "B", "tie")] * 5
    (pair,) = leaderboard(reverse, n_resamples=300)["pairs"]
    assert pair["model_a"] == "B" and pair["verdict"] == "a_better" and pair["win_rate_a"] == 32.5 / 40
    assert pair["winner"] == "B" and pair["verdict_text"] == "B beats A"


def test_models_are_keyed_by_id_and_names_are_for_display_only():
    votes = [(7, 3, "a")] * 30 + [(7, 3, "b")] * 5
    board = leaderboard(votes, n_resamples=100, names={7: "tiny/tuned", 3: "tiny/base"})
    assert [(r["model"], r["name"]) for r in board["models"]] == [(7, "tiny/tuned"), (3, "tiny/base")]
    (pair,) = board["pairs"]
    assert (pair["model_a"], pair["model_b"], pair["winner"]) == (7, 3, 7)
    assert (pair["name_a"], pair["name_b"]) == ("tiny/tuned", "tiny/base")
    assert pair["verdict_text"] == "tiny/tuned beats tiny/base"
    assert board["matrix"]["models"] == [7, 3] and board["matrix"]["names"] == ["tiny/tuned", "tiny/base"]
    renamed = leaderboard(votes, n_resamples=100, names={7: "not enough votes", 3: "x"})
    assert renamed["pairs"][0]["enough_votes"] and renamed["pairs"][0]["verdict"] is Verdict.A_BETTER
    assert json.loads(json.dumps(board))["pairs"][0]["verdict"] == "a_better"


def test_head_to_head_is_seen_from_either_side():
    board = leaderboard([(1, 2, "b")] * 30 + [(1, 2, "a")] * 6, n_resamples=200)
    two, one = head_to_head(board, 2, 1), head_to_head(board, 1, 2)
    assert two.win_rate == pytest.approx(30 / 36) and one.win_rate == pytest.approx(6 / 36)
    assert two.beats_interval[0] > 0.5 and one.beats_interval == pytest.approx(
        (1 - two.beats_interval[1], 1 - two.beats_interval[0])
    )
    assert two.model_is_better and not one.model_is_better and one.winner == two.winner == 2
    assert two.votes == one.votes == 36 and head_to_head(board, 1, 3) is None
    undecided = head_to_head(leaderboard([(1, 2, "a")] * 3 + [(1, 2, "b")] * 2, n_resamples=100), 1, 2)
    assert not undecided.enough_votes and undecided.winner is None and not undecided.model_is_better


def test_one_sided_records_need_an_exact_sign_test():
    """A record with no loss is degenerate under the bootstrap: 2-0 is not evidence, 6-0 is (sign test, 95%)."""
    (pair,) = leaderboard([("A", "B", "a")] * 2, n_resamples=100)["pairs"]
    assert pair["separated"] and pair["verdict"] is Verdict.UNDECIDED and not pair["enough_votes"]
    assert pair["verdict_text"] == "not enough votes to tell A and B apart (2 votes)"
    board = leaderboard([("A", "B", "a")] * 6, n_resamples=100)
    assert board["pairs"][0]["verdict"] is Verdict.A_BETTER and board["pairs"][0]["winner"] == "A"
    assert [r["rank"] for r in board["models"]] == [1, 2]
    assert [r["rank"] for r in leaderboard([("A", "B", "a")] * 5, n_resamples=100)["models"]] == [1, 1]


def test_disconnected_models_are_not_compared():
    board = leaderboard([("A", "B", "a")] * 30 + [("A", "B", "b")] * 5 + [("C", "D", "a")] * 30, n_resamples=100)
    assert not board["connected"]
    pairs = {(p["model_a"], p["model_b"]): p for p in board["pairs"]}
    across = pairs.get(("A", "C")) or pairs[("C", "A")]
    assert across["p_interval"] is None and across["verdict"] is Verdict.UNDECIDED
    assert across["verdict_text"].endswith("apart (0 votes)")


def test_deterministic_given_seed_and_independent_of_vote_order():
    votes = simulate([0.0, 0.2, 0.5, -0.3], 600, np.random.default_rng(11), names=["p", "q", "r", "s"])
    one = leaderboard(votes, n_resamples=200, seed=5)
    assert json.dumps(one) == json.dumps(leaderboard(votes, n_resamples=200, seed=5))
    assert json.dumps(one) == json.dumps(leaderboard(votes[::-1], n_resamples=200, seed=5))
    assert one["models"] != leaderboard(votes, n_resamples=200, seed=6)["models"]
    b1 = bootstrap_intervals(votes, n_resamples=100, seed=1)
    b2 = bootstrap_intervals(votes, n_resamples=100, seed=1)
    assert b1.strengths == b2.strengths and b1.win_probability == b2.win_probability


@pytest.mark.parametrize(
    ("votes", "kwargs", "message"),
    [
        ([("A", "B", "draw")], {}, "unknown outcome 'draw'"),
        ([("A", "B", "a"), ("A", "A", "b")], {}, "voted against itself"),
        ([], {}, "no votes"),
        ([("A", "B", "skip")], {}, "no votes"),
        ([("A", "B", "both_bad")], {"both_bad": "exclude"}, "no votes"),
        ([("A", "B")], {}, "triple"),
        ([("A", "B", "a")], {"both_bad": "ignore"}, "both_bad must be"),
        ([("A", "B", "a")], {"prior": -1.0}, "prior"),
        ([("A", "B", "a")], {"reference": "Z"}, "reference model 'Z'"),
    ],
)
def test_bad_input_raises_clear_errors(votes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_bradley_terry(votes, **kwargs)


def test_bad_bootstrap_settings():
    votes = [("A", "B", "a"), ("B", "A", "a")]
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(votes, level=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        leaderboard(votes, n_resamples=0)

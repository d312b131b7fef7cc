"""Bradley–Terry ratings from arena votes between model versions, with honest bootstrap intervals.

No Django here: plain numpy/scipy, so the same code runs in notebooks, workers and views.

Model
    Every model ``m`` has a strength ``s_m`` on the log-odds scale and ``P(a beats b) = sigmoid(s_a - s_b)``.
    A vote is a triple ``(model_a, model_b, outcome)`` with outcome ``"a"`` or ``"b"`` (a win), ``"tie"`` (half a
    win to each side), ``"both_bad"`` (a tie, or dropped with ``both_bad="exclude"``) or ``"skip"`` (ignored).
    With ``W[i, j]`` the fractional number of wins of ``i`` over ``j`` the fit maximises

        sum_{i != j} W[i, j] * log sigmoid(s_i - s_j)  -  prior / 2 * sum_i s_i ** 2

    by damped Newton iterations (the objective is strictly concave). The likelihood only sees differences; the tiny
    L2 prior (default 1e-6) keeps a model that won every vote finite and pins the mean strength of every connected
    group of models to 0. ``reference=m`` reports strengths relative to model ``m`` instead. The display scale is
    Elo-like: ``rating = 400 / ln(10) * s + 1000``, so 400 points are 10:1 odds.

Uncertainty
    Nonparametric bootstrap: the votes are resampled with replacement (as multinomial counts of the distinct
    (pair, outcome) cells, which is the same distribution and much cheaper), every resample is refitted (batched
    Newton warm-started at the full-data fit) and percentile intervals are taken of each strength and of each
    pairwise win probability ``sigmoid(s_a - s_b)``. Win-probability intervals do not depend on the normalisation;
    strength intervals do (they are relative to the mean, or to the reference model, whose interval is then [0, 0]).

Rank rule (Chatbot Arena)
    ``rank = 1 + number of models whose interval's lower bound is above this model's upper bound``: models whose
    intervals overlap share a rank, so a rank is only as fine as the votes allow. Models that no chain of votes
    connects are never compared (neither for ranks nor for pairwise verdicts).

Separation
    If model A was never beaten by (nor tied with) B, not even through a chain of other models, the likelihood
    alone puts ``s_A - s_B`` at infinity: the finite value comes from the prior, and every bootstrap resample shows
    the same one-sided record, so the bootstrap interval is degenerate (A "beats" B after a single vote). Such pairs
    are flagged ``separated``; for them the leaderboard replaces the interval test by an exact sign test on the
    direct votes (all n won by A: significant when ``0.5 ** n < (1 - level) / 2``, i.e. n >= 6 at 95%), closed
    under chains (A beat B and B beat C, both significantly: A beats C), for the verdict and the rank alike.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from scipy.special import expit, log_expit

__all__ = [
    "DEFAULT_PRIOR",
    "ELO_BASE",
    "ELO_SCALE",
    "OUTCOMES",
    "BootstrapIntervals",
    "HeadToHead",
    "Verdict",
    "arena_rank",
    "bootstrap_intervals",
    "display_rating",
    "fit_bradley_terry",
    "head_to_head",
    "leaderboard",
    "verdict_text",
]

OUTCOMES = ("a", "b", "tie", "both_bad", "skip")
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
DEFAULT_PRIOR = 1e-6

BothBad = Literal["tie", "exclude"]
Model = Hashable

_A_WINS, _B_WINS, _TIE = 0, 1, 2
_CHUNK_CELLS = 2_000_000  # bootstrap resamples are refitted in chunks of about this many K x K entries


def display_rating(strength: float | np.ndarray) -> float | np.ndarray:
    """Elo-like display scale: ``400 / ln(10) * strength + 1000``."""
    return ELO_SCALE * strength + ELO_BASE


# --------------------------------------------------------------------------------------------------------------------
# Parsing votes
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Votes:
    """Votes aggregated into cells: one per (pair i < j, outcome) that occurred, with its count."""

    models: list[Model]
    pairs: np.ndarray  # (C, 2) model indices, i < j
    codes: np.ndarray  # (C,) _A_WINS: i won, _B_WINS: j won, _TIE
    counts: np.ndarray  # (C,) number of votes in the cell
    groups: list[np.ndarray]  # connected components of the comparison graph (model indices)
    skipped: int
    both_bad: int
    both_bad_excluded: int

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_votes(self) -> int:
        return int(self.counts.sum())

    def component_of(self) -> np.ndarray:
        """Component label of each model."""
        label = np.empty(self.n_models, dtype=int)
        for k, group in enumerate(self.groups):
            label[group] = k
        return label


def _parse(votes: Iterable[Any], both_bad: str) -> _Votes:
    if both_bad not in ("tie", "exclude"):
        raise ValueError(f"both_bad must be 'tie' or 'exclude', got {both_bad!r}")
    first_seen: dict[Model, int] = {}
    rows: list[tuple[Model, Model, int]] = []
    skipped = n_both_bad = excluded = 0
    for n, vote in enumerate(votes):
        try:
            a, b, outcome = vote
        except (TypeError, ValueError):
            raise ValueError(f"vote #{n} must be a (model_a, model_b, outcome) triple, got {vote!r}") from None
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            raise ValueError(f"vote #{n}: unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}")
        try:
            hash(a), hash(b)
        except TypeError:
            raise ValueError(f"vote #{n}: model ids must be hashable, got {a!r} and {b!r}") from None
        if a == b:
            raise ValueError(f"vote #{n}: model {a!r} was voted against itself")
        if outcome == "skip":
            skipped += 1
            continue
        if outcome == "both_bad":
            n_both_bad += 1
            if both_bad == "exclude":
                excluded += 1
                continue
        code = _A_WINS if outcome == "a" else _B_WINS if outcome == "b" else _TIE
        first_seen.setdefault(a, len(first_seen))
        first_seen.setdefault(b, len(first_seen))
        rows.append((a, b, code))
    if not rows:
        raise ValueError(
            f"no votes to rate (skipped: {skipped}, both_bad excluded: {excluded}); "
            "a vote is (model_a, model_b, outcome) with outcome 'a', 'b', 'tie' or 'both_bad'"
        )
    try:  # a canonical model order makes results independent of the order of the votes
        models = sorted(first_seen)
    except TypeError:  # ids of mixed, unorderable types: order of first appearance
        models = list(first_seen)
    index = {m: k for k, m in enumerate(models)}
    ia = np.fromiter((index[r[0]] for r in rows), dtype=np.int64, count=len(rows))
    ib = np.fromiter((index[r[1]] for r in rows), dtype=np.int64, count=len(rows))
    code = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
    swap = ia > ib
    lo, hi = np.where(swap, ib, ia), np.where(swap, ia, ib)
    code = np.where(swap & (code != _TIE), 1 - code, code)
    k = len(models)
    cells, counts = np.unique((lo * k + hi) * 3 + code, return_counts=True)
    pair_id, codes = np.divmod(cells, 3)
    pairs = np.stack(np.divmod(pair_id, k), axis=1)
    return _Votes(
        models=models,
        pairs=pairs,
        codes=codes,
        counts=counts.astype(np.int64),
        groups=_components(k, pairs),
        skipped=skipped,
        both_bad=n_both_bad,
        both_bad_excluded=excluded,
    )


def _components(k: int, pairs: np.ndarray) -> list[np.ndarray]:
    parent = list(range(k))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs.tolist():
        parent[find(i)] = find(j)
    roots = np.array([find(x) for x in range(k)])
    return [np.flatnonzero(roots == r) for r in dict.fromkeys(roots.tolist())]


def _closure(adj: np.ndarray) -> np.ndarray:
    """Reflexive transitive closure of a boolean adjacency matrix."""
    reach = adj | np.eye(adj.shape[0], dtype=bool)
    while True:
        step = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
        if (step == reach).all():
            return reach
        reach = step


def _wins(data: _Votes, counts: np.ndarray) -> np.ndarray:
    """Fractional win matrices ``W[b, i, j]`` (wins of i over j, ties half) for count vectors ``counts[b, cell]``."""
    k = data.n_models
    w = np.zeros((counts.shape[0], k * k))
    i, j = data.pairs[:, 0], data.pairs[:, 1]
    for code, (to_i, to_j) in ((_A_WINS, (1.0, 0.0)), (_B_WINS, (0.0, 1.0)), (_TIE, (0.5, 0.5))):
        sel = data.codes == code  # within one code every pair occurs at most once: no repeated indices
        if to_i:
            w[:, i[sel] * k + j[sel]] += to_i * counts[:, sel]
        if to_j:
            w[:, j[sel] * k + i[sel]] += to_j * counts[:, sel]
    return w.reshape(-1, k, k)


# --------------------------------------------------------------------------------------------------------------------
# Solver
# --------------------------------------------------------------------------------------------------------------------


def _objective(w: np.ndarray, s: np.ndarray, prior: float) -> np.ndarray:
    """Penalised negative log-likelihood of each batch item."""
    d = s[:, :, None] - s[:, None, :]
    return -(w * log_expit(d)).sum(axis=(1, 2)) + 0.5 * prior * (s * s).sum(axis=1)


def _newton(
    w: np.ndarray, s0: np.ndarray, prior: float, groups: list[np.ndarray], tol: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Batched damped Newton on the penalised likelihood, inside the subspace where every group has mean 0.

    The optimum lies in that subspace (the likelihood is invariant to shifting a group, the prior is smallest at
    mean 0), so the steps are projected onto it; this keeps the translation direction, whose curvature is only
    ``prior``, out of the linear solves. Returns the strengths and a per-item converged flag.
    """
    b, k, _ = w.shape
    n = w + w.transpose(0, 2, 1)
    g_proj = np.zeros((k, k))  # projector onto the per-group constant vectors
    for group in groups:
        g_proj[np.ix_(group, group)] = 1.0 / len(group)
    s = s0.copy()
    f = _objective(w, s, prior)
    converged = np.zeros(b, dtype=bool)
    last_size = np.full(b, np.inf)
    diag = np.arange(k)
    active = np.arange(b)
    for _ in range(max_iter):
        wa, na, sa = w[active], n[active], s[active]
        d = sa[:, :, None] - sa[:, None, :]
        p, q = expit(d), expit(-d)
        resid = np.triu(na * p - wa, 1)  # per pair i < j; antisymmetric use keeps the gradient's sum ~ 0
        grad = resid.sum(axis=2) - resid.sum(axis=1) + prior * sa
        grad -= grad @ g_proj
        curv = na * p * q
        curv = 0.5 * (curv + curv.transpose(0, 2, 1))
        hess = -curv
        hess[:, diag, diag] = curv.sum(axis=2) + prior
        scale = hess[:, diag, diag].mean(axis=1)
        hess += (scale - prior)[:, None, None] * g_proj  # identity on the group-constant directions
        step = -np.linalg.solve(hess, grad[..., None])[..., 0]
        step -= step @ g_proj
        slope = (grad * step).sum(axis=1)
        f0 = f[active]
        t = np.ones(active.size)
        for _ in range(60):  # backtracking (Armijo), per item
            s_new = sa + t[:, None] * step
            f_new = _objective(wa, s_new, prior)
            ok = f_new <= f0 + 1e-4 * t * slope + 1e-12 * np.abs(f0)
            if ok.all():
                break
            t = np.where(ok, t, 0.5 * t)
        s[active], f[active] = s_new, f_new
        size = np.abs(t[:, None] * step).max(axis=1)
        # converged: step below tol, or stalled at the rounding floor (quadratic convergence has stopped paying)
        done = (size < tol) | ((size < 1e-7) & (size >= 0.5 * last_size[active]))
        last_size[active] = size
        converged[active[done]] = True
        active = active[~done]
        if active.size == 0:
            break
    return s, converged


def _fit(data: _Votes, prior: float, tol: float, max_iter: int) -> np.ndarray:
    """Mean-zero (per group) maximum-likelihood strengths, in ``data.models`` order."""
    w = _wins(data, data.counts[None, :])
    if prior == 0:
        reach = _closure(w[0] > 0)
        if not (reach & reach.T)[data.component_of()[:, None] == data.component_of()[None, :]].all():
            raise RuntimeError(
                "with prior=0 a model that won (or lost) every vote, directly or through a chain of models, "
                "has no finite strength: use prior > 0"
            )
    s, converged = _newton(w, np.zeros((1, data.n_models)), prior, data.groups, tol, max_iter)
    if not converged[0]:
        raise RuntimeError(
            f"Bradley-Terry fit did not converge in {max_iter} iterations; with prior={prior} a model that won "
            "(or lost) every vote has no finite strength: use prior > 0"
        )
    return s[0]


def _check_prior(prior: float) -> None:
    if not (prior >= 0 and math.isfinite(prior)):
        raise ValueError(f"prior must be a finite number >= 0, got {prior!r}")


def _reference_index(data: _Votes, reference: Model | None) -> int | None:
    if reference is None:
        return None
    try:
        return data.models.index(reference)
    except ValueError:
        raise ValueError(f"reference model {reference!r} has no votes") from None


def fit_bradley_terry(
    votes: Iterable[Any],
    *,
    both_bad: BothBad = "tie",
    prior: float = DEFAULT_PRIOR,
    reference: Model | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> dict[Model, float]:
    """Maximum-likelihood Bradley–Terry strengths (log-odds scale), ties as half-wins.

    Strengths have mean 0 (per connected group of models) unless ``reference`` names the model fixed at 0.
    ``prior`` is the L2 penalty that keeps unbeaten models finite; ``tol`` bounds the last Newton step.
    """
    _check_prior(prior)
    data = _parse(votes, both_bad)
    s = _fit(data, prior, tol, max_iter)
    ref = _reference_index(data, reference)
    if ref is not None:
        s = s - s[ref]
    return {m: float(v) for m, v in zip(data.models, s, strict=True)}


# --------------------------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapIntervals:
    """Percentile bootstrap intervals.

    ``strengths[m]`` is the interval of model m's strength; ``win_probability[(a, b)]`` the interval of
    P(a beats b), for every ordered pair of models connected by some chain of votes. ``samples`` holds the refitted
    strengths, one row per resample, columns in ``models`` order.
    """

    models: list[Model]
    level: float
    n_resamples: int
    strengths: dict[Model, tuple[float, float]]
    win_probability: dict[tuple[Model, Model], tuple[float, float]]
    samples: np.ndarray = field(repr=False)


def _bootstrap(
    data: _Votes,
    s_hat: np.ndarray,
    n_resamples: int,
    seed: int | np.random.Generator | None,
    level: float,
    prior: float,
    ref: int | None,
) -> BootstrapIntervals:
    if not (isinstance(n_resamples, int | np.integer) and n_resamples >= 1):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    rng = np.random.default_rng(seed)
    k, n = data.n_models, data.n_votes
    freq = data.counts / n
    chunk = max(1, _CHUNK_CELLS // (k * k))
    samples = np.empty((n_resamples, k))
    unconverged = 0
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        counts = rng.multinomial(n, freq, size=size)
        s, converged = _newton(_wins(data, counts), np.tile(s_hat, (size, 1)), prior, data.groups, 1e-8, 100)
        samples[start : start + size] = s
        unconverged += int((~converged).sum())
    if unconverged:
        warnings.warn(f"{unconverged} of {n_resamples} bootstrap refits did not converge", RuntimeWarning, stacklevel=3)
    if ref is not None:
        samples -= samples[:, [ref]]
    q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    lo, hi = np.quantile(samples, q, axis=0)
    strengths = {m: (float(a), float(b)) for m, a, b in zip(data.models, lo, hi, strict=True)}
    win_probability: dict[tuple[Model, Model], tuple[float, float]] = {}
    for group in data.groups:
        for x, i in enumerate(group):
            for j in group[x + 1 :]:
                p_lo, p_hi = np.quantile(expit(samples[:, i] - samples[:, j]), q)
                a, b = data.models[i], data.models[j]
                win_probability[(a, b)] = (float(p_lo), float(p_hi))
                win_probability[(b, a)] = (float(1.0 - p_hi), float(1.0 - p_lo))
    return BootstrapIntervals(
        models=list(data.models),
        level=level,
        n_resamples=n_resamples,
        strengths=strengths,
        win_probability=win_probability,
        samples=samples,
    )


def bootstrap_intervals(
    votes: Iterable[Any],
    n_resamples: int = 1000,
    seed: int | np.random.Generator | None = 0,
    level: float = 0.95,
    *,
    both_bad: BothBad = "tie",
    prior: float = DEFAULT_PRIOR,
    reference: Model | None = None,
) -> BootstrapIntervals:
    """Resample the votes with replacement, refit, and return percentile intervals (deterministic given ``seed``)."""
    _check_prior(prior)
    data = _parse(votes, both_bad)
    s_hat = _fit(data, prior, 1e-10, 200)
    return _bootstrap(data, s_hat, n_resamples, seed, level, prior, _reference_index(data, reference))


# --------------------------------------------------------------------------------------------------------------------
# Leaderboard
# --------------------------------------------------------------------------------------------------------------------


def arena_rank(intervals: Mapping[Model, tuple[float, float]]) -> dict[Model, int]:
    """Chatbot Arena's rule: 1 + the number of models whose lower bound is above this model's upper bound."""
    lows = np.array([lo for lo, _ in intervals.values()], dtype=float)
    return {m: 1 + int((lows > hi).sum()) for m, (_, hi) in intervals.items()}


def _json_id(model: Model) -> Any:
    return model.item() if isinstance(model, np.generic) else model


def _rate(wins: float, ties: float, total: float) -> float | None:
    return float((wins + 0.5 * ties) / total) if total else None


class Verdict(StrEnum):
    """What the votes say about a pair: ``model_a`` is better, ``model_b`` is better, or too few votes to tell."""

    A_BETTER = "a_better"
    B_BETTER = "b_better"
    UNDECIDED = "undecided"


def _verdict(interval: tuple[float, float] | None) -> Verdict:
    """The verdict from the interval of P(a beats b): decided only when it excludes 50%."""
    if interval is not None and interval[0] > 0.5:
        return Verdict.A_BETTER
    if interval is not None and interval[1] < 0.5:
        return Verdict.B_BETTER
    return Verdict.UNDECIDED


def verdict_text(verdict: Verdict, name_a: str, name_b: str, total: int) -> str:
    """The verdict in words, for display only (decisions branch on :class:`Verdict`)."""
    if verdict is Verdict.A_BETTER:
        return f"{name_a} beats {name_b}"
    if verdict is Verdict.B_BETTER:
        return f"{name_b} beats {name_a}"
    return f"not enough votes to tell {name_a} and {name_b} apart ({total} vote{'' if total == 1 else 's'})"


def leaderboard(
    votes: Iterable[Any],
    *,
    n_resamples: int = 1000,
    seed: int | np.random.Generator | None = 0,
    level: float = 0.95,
    both_bad: BothBad = "tie",
    prior: float = DEFAULT_PRIOR,
    reference: Model | None = None,
    names: Mapping[Model, str] | None = None,
) -> dict[str, Any]:
    """A JSON-serialisable leaderboard: ratings with intervals and ranks, pairwise counts and verdicts.

    ``models`` is sorted by (rank, -strength); ``pairs`` lists every pair once, the better-placed model as
    ``model_a``; ``matrix`` holds the same counts as square lists in ``matrix["models"]`` order. Models are
    keyed by their ids (``model``, ``model_a``, ``model_b``, ``winner``); ``names`` (default ``str(id)``) only
    fills the display fields (``name``, ``name_a``, ``name_b``, ``verdict_text``, ``matrix["names"]``). Each
    pair's ``verdict`` is a :class:`Verdict` and ``enough_votes`` says whether it is decided.
    """
    _check_prior(prior)
    data = _parse(votes, both_bad)
    ref = _reference_index(data, reference)
    s_hat = _fit(data, prior, 1e-10, 200)
    boot = _bootstrap(data, s_hat, n_resamples, seed, level, prior, ref)
    s = s_hat - s_hat[ref] if ref is not None else s_hat
    k = data.n_models
    label = data.component_of()
    name = [str(m) if names is None else str(names.get(m, m)) for m in data.models]

    # counts: wins[i, j] = votes i won against j, ties[i, j] (symmetric) = ties and counted both_bad
    wins = np.zeros((k, k), dtype=np.int64)
    ties = np.zeros((k, k), dtype=np.int64)
    i, j, c = data.pairs[:, 0], data.pairs[:, 1], data.counts
    for code in (_A_WINS, _B_WINS, _TIE):
        sel = data.codes == code
        if code == _A_WINS:
            wins[i[sel], j[sel]] += c[sel]
        elif code == _B_WINS:
            wins[j[sel], i[sel]] += c[sel]
        else:
            ties[i[sel], j[sel]] += c[sel]
            ties[j[sel], i[sel]] += c[sel]
    total = wins + wins.T + ties

    # separated[i, j]: no chain of wins or ties leads from j back to i or vice versa (infinite MLE difference)
    reach = _closure((wins + ties) > 0)
    same_group = label[:, None] == label[None, :]
    separated = same_group & ~(reach & reach.T)
    n_sign = math.floor(math.log((1.0 - level) / 2.0) / math.log(0.5)) + 1  # fewest all-won votes that are significant
    dominates = _closure(separated & (wins >= n_sign)) & separated

    # ranks: the arena rule within each connected group (models no votes connect are not comparable)
    lo, hi = np.array([boot.strengths[m] for m in data.models]).T
    above = same_group & np.where(separated, dominates, lo[:, None] > hi[None, :])  # above[x, y]: x is above y
    rank = (1 + above.sum(axis=0)).tolist()
    order = sorted(range(k), key=lambda y: (rank[y], -s[y], y))

    rows = []
    for y in order:
        n_y = int(total[y].sum())
        rows.append(
            {
                "model": _json_id(data.models[y]),
                "name": name[y],
                "rank": rank[y],
                "strength": float(s[y]),
                "strength_interval": [float(lo[y]), float(hi[y])],
                "rating": float(display_rating(s[y])),
                "rating_interval": [float(display_rating(lo[y])), float(display_rating(hi[y]))],
                "separated": bool(separated[y].any()),
                "votes": n_y,
                "wins": int(wins[y].sum()),
                "losses": int(wins[:, y].sum()),
                "ties": int(ties[y].sum()),
                "win_rate": _rate(wins[y].sum(), ties[y].sum(), n_y),
            }
        )

    pairs = []
    for x, ya in enumerate(order):
        for yb in order[x + 1 :]:
            a, b = data.models[ya], data.models[yb]
            sep = bool(separated[ya, yb])
            interval = None if sep else boot.win_probability.get((a, b))
            n_ab = int(total[ya, yb])
            if sep:
                verdict = _verdict((1.0, 1.0) if dominates[ya, yb] else (0.0, 0.0) if dominates[yb, ya] else None)
            else:
                verdict = _verdict(interval)
            winner = {Verdict.A_BETTER: a, Verdict.B_BETTER: b}.get(verdict)
            pairs.append(
                {
                    "model_a": _json_id(a),
                    "model_b": _json_id(b),
                    "name_a": name[ya],
                    "name_b": name[yb],
                    "wins_a": int(wins[ya, yb]),
                    "wins_b": int(wins[yb, ya]),
                    "ties": int(ties[ya, yb]),
                    "total": n_ab,
                    "win_rate_a": _rate(wins[ya, yb], ties[ya, yb], n_ab),
                    "p_a_beats_b": float(expit(s[ya] - s[yb])) if label[ya] == label[yb] else None,
                    "p_interval": list(interval) if interval is not None else None,
                    "separated": sep,
                    "verdict": verdict,
                    "enough_votes": verdict is not Verdict.UNDECIDED,
                    "winner": _json_id(winner) if winner is not None else None,
                    "verdict_text": verdict_text(verdict, name[ya], name[yb], n_ab),
                }
            )

    return {
        "models": rows,
        "pairs": pairs,
        "matrix": {
            "models": [_json_id(data.models[y]) for y in order],
            "names": [name[y] for y in order],
            "wins": [[int(wins[ya, yb]) for yb in order] for ya in order],
            "ties": [[int(ties[ya, yb]) for yb in order] for ya in order],
            "total": [[int(total[ya, yb]) for yb in order] for ya in order],
            "win_rate": [[_rate(wins[ya, yb], ties[ya, yb], total[ya, yb]) for yb in order] for ya in order],
        },
        "votes": {
            "used": data.n_votes,
            "skipped": data.skipped,
            "both_bad": data.both_bad,
            "both_bad_excluded": data.both_bad_excluded,
        },
        "connected": len(data.groups) == 1,
        "settings": {
            "n_resamples": int(n_resamples),
            "seed": seed if isinstance(seed, int) or seed is None else None,
            "level": level,
            "both_bad": both_bad,
            "prior": prior,
            "reference": _json_id(reference) if reference is not None else None,
            "scale": "rating = 400 / ln(10) * strength + 1000",
        },
    }


@dataclass(frozen=True)
class HeadToHead:
    """One model against another in a :func:`leaderboard`, seen from ``model``'s side.

    ``win_rate`` is ``model``'s (ties half); ``beats_interval`` the interval of P(model beats other) (None when
    the pair is separated or not connected); ``winner`` the better model when ``enough_votes``, else None.
    """

    model: Model
    other: Model
    votes: int
    win_rate: float | None
    beats_interval: tuple[float, float] | None
    enough_votes: bool
    winner: Model | None
    verdict_text: str

    @property
    def model_is_better(self) -> bool:
        return self.enough_votes and self.winner == self.model


def head_to_head(board: Mapping[str, Any], model: Model, other: Model) -> HeadToHead | None:
    """``model`` against ``other`` from a :func:`leaderboard` (None when the board does not hold both)."""
    for pair in board["pairs"]:
        if (pair["model_a"], pair["model_b"]) == (model, other):
            interval = pair["p_interval"]
            return HeadToHead(
                model=model,
                other=other,
                votes=pair["total"],
                win_rate=pair["win_rate_a"],
                beats_interval=tuple(interval) if interval is not None else None,
                enough_votes=pair["enough_votes"],
                winner=pair["winner"],
                verdict_text=pair["verdict_text"],
            )
        if (pair["model_a"], pair["model_b"]) == (other, model):
            interval, rate = pair["p_interval"], pair["win_rate_a"]
            return HeadToHead(
                model=model,
                other=other,
                votes=pair["total"],
                win_rate=None if rate is None else 1.0 - rate,
                beats_interval=(1.0 - interval[1], 1.0 - interval[0]) if interval is not None else None,
                enough_votes=pair["enough_votes"],
                winner=pair["winner"],
                verdict_text=pair["verdict_text"],
            )
    return None

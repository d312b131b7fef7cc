"""Reward learning curve: held-out decisive accuracy, as a share of the achievable, against the number of votes,
for random and active (uncertainty) pair selection, on several sandbox preferences, several seeds each.

    python bench/reward_curve.py                                   # 4 oracles x 2 selections x 3 seeds
    python bench/reward_curve.py --oracles centred --seeds 0 --strategies random,uncertainty,bald --json out.json

The world (as ``rewards.sandbox_experiment`` builds it): ``--per-prompt`` (default 12) images of each of the 96
sandbox prompts from the real sandbox pipeline; candidate pairs are every within-prompt pair (66 per prompt, which
image is "a" drawn at random); a simulated annotator follows the pixel oracle (the higher reward wins, a tie when
the rewards are within 0.05) and 10% of votes are flipped (a flipped tie is a random side). Per seed the prompts
are split: 20% are the test prompts (every pair gets ``--test-votes`` votes, 3 by default), the rest is the pool
that selection draws from. Achievable = the decisive accuracy of a perfect oracle follower on the test votes.

Selection, as a campaign with ``k`` votes per pair (``--votes-per-pair``, 1 by default) runs it: ``random`` asks the
pool's pairs in a seeded random order; the active strategies start with the same first ``--refit-every`` random
votes, then after every ``--refit-every`` votes refit the quick reward model (``rewards.quick``, its defaults: the
head, 5 bootstrap members) on the votes so far and ask next the unvoted pairs of highest priority
(``rewards.active``): ``uncertainty`` (closeness to 0.5 + BALD-like disagreement), ``bald`` (disagreement only),
``closeness`` (least confidence only); a ``+explore`` suffix gives a random quarter of the pairs the top
priority, ``+diverse`` spreads each batch across prompts. At each budget the model fitted on exactly those votes
is scored on the test votes. Both selections see the same simulated votes for a pair (common random numbers).

Prints the table (mean share of achievable over seeds, with its standard deviation) and, per oracle and active
strategy, how many votes it needs to reach random selection's accuracy at ``--reference`` votes (1,000). ONE torch
thread by default. Images, oracle scores and CLIP features are cached under ``BENCH_CACHE``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.probe_features import registered_oracles, resolve_backbone  # noqa: E402
from bench.sandbox_images import CACHE, cached_sandbox_images  # noqa: E402
from rewards.active import diversify, mix_with_random, priority_for  # noqa: E402
from rewards.data import PreferencePair  # noqa: E402
from rewards.metrics import decisive_accuracy  # noqa: E402

BUDGETS = (100, 200, 300, 500, 700, 1000, 1500, 2000, 3000)
DEFAULT_ORACLES = ("area", "centred", "balanced", "high")  # size, position, size fit, placement


@dataclass(frozen=True)
class CurveConfig:
    per_prompt: int = 12
    test_fraction: float = 0.2
    flip_probability: float = 0.1
    tie_margin: float = 0.05
    test_votes: int = 3
    votes_per_pair: int = 1
    refit_every: int = 100  # 0: refit only at each budget (the batch until the next budget from one model)
    reference: int = 1000
    head: str | None = None  # None: rewards.quick's default
    ensemble_size: int = 5


@dataclass(frozen=True)
class Candidate:
    prompt: str
    a: int  # image index within the prompt
    b: int


class World:
    """Images, every within-prompt candidate pair and one oracle's scores."""

    def __init__(self, images: dict[str, list[np.ndarray]], scores: dict[str, np.ndarray], seed: int = 0) -> None:
        self.images, self.scores = images, scores
        rng = np.random.default_rng(seed)
        self.candidates: list[Candidate] = []
        for prompt in sorted(images):
            for i, j in combinations(range(len(images[prompt])), 2):
                self.candidates.append(Candidate(prompt, *((j, i) if rng.random() < 0.5 else (i, j))))

    def label(self, c: Candidate, margin: float) -> float:
        """The perfect oracle follower's label_a: 1, 0 or 0.5 (a tie within the margin)."""
        r_a, r_b = self.scores[c.prompt][c.a], self.scores[c.prompt][c.b]
        return 0.5 if abs(r_a - r_b) < margin else (1.0 if r_a > r_b else 0.0)

    def votes(self, c: Candidate, n: int, config: CurveConfig, rng: np.random.Generator) -> list[float]:
        """``n`` noisy simulated votes (label_a) on a candidate pair."""
        truth, out = self.label(c, config.tie_margin), []
        for _ in range(n):
            label = truth
            if rng.random() < config.flip_probability:
                label = float(rng.integers(2)) if label == 0.5 else 1.0 - label
            out.append(label)
        return out

    def pair(self, c: Candidate, label_a: float) -> PreferencePair:
        images = self.images[c.prompt]
        key = f"{c.prompt}#{c.a}-{c.b}"
        return PreferencePair(c.prompt, images[c.a], images[c.b], label_a, 1.0 - label_a, "sim", key)

    @staticmethod
    def keys(cands: Sequence[Candidate]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        return [(c.prompt, c.a) for c in cands], [(c.prompt, c.b) for c in cands]


def oracle_scores(name: str, oracle: Callable, images: dict[str, list[np.ndarray]], tag: str) -> dict[str, np.ndarray]:
    """Each image's oracle score, cached on disk (the oracles are slow pure-Python code)."""
    path = CACHE / f"scores-{name}-{tag}.json"
    if path.exists():
        return {p: np.asarray(v) for p, v in json.loads(path.read_text()).items()}
    scores = {p: np.asarray([oracle(p, image) for image in images[p]]) for p in images}
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({p: v.tolist() for p, v in scores.items()}))
    return scores


def feature_cache(backbone: str, world: World, tag: str):
    """A ``rewards.features.FeatureCache`` holding every image's features (key: (prompt, index)), saved to disk."""
    from rewards.features import FeatureCache

    cache = FeatureCache(backbone)
    path = CACHE / f"features-{tag}.pt"
    if path.exists():
        cache.load(path)
    keys = [(p, i) for p in sorted(world.images) for i in range(len(world.images[p]))]
    missing = [k for k in keys if k not in cache._images]  # noqa: SLF001 - a bench peeking at its own cache
    if missing:
        cache.keys_for([world.images[p][i] for p, i in missing], missing)
        cache.save(path)
    cache.text_features(sorted(world.images))
    return cache


def _fit(pairs: list[PreferencePair], cands: list[Candidate], cache, config: CurveConfig, seed: int):
    from rewards.quick import fit_quick_reward_model

    keys_a, keys_b = World.keys(cands)
    options = {"head": config.head} if config.head else {}
    return fit_quick_reward_model(
        pairs,
        features=cache,
        image_keys_a=keys_a,
        image_keys_b=keys_b,
        ensemble_size=config.ensemble_size,
        seed=seed,
        **options,
    )


def _predict(model, world: World, cands: Sequence[Candidate]):
    keys_a, keys_b = World.keys(cands)
    images_a = [world.images[c.prompt][c.a] for c in cands]
    images_b = [world.images[c.prompt][c.b] for c in cands]
    return model.predict_pairs([c.prompt for c in cands], images_a, images_b, keys_a, keys_b)


def _priorities(strategy: str, pred, cands: Sequence[Candidate], seed: int) -> np.ndarray:
    base, *modifiers = strategy.split("+")
    priority = priority_for(pred, base)
    for modifier in modifiers:
        if modifier == "explore":
            priority = mix_with_random(priority, 0.25, seed)
        elif modifier == "diverse":
            priority = diversify(priority, [c.prompt for c in cands])
        else:
            raise ValueError(f"unknown strategy modifier {modifier!r}")
    return priority


def run_one(world: World, cache, strategy: str, seed: int, config: CurveConfig, budgets: Sequence[int]) -> dict:
    """One (oracle, strategy, seed) curve: accuracy and share of achievable at each budget."""
    prompts = sorted(world.images)
    random.Random(seed).shuffle(prompts)
    test_prompts = set(prompts[: max(1, round(config.test_fraction * len(prompts)))])
    test = [c for c in world.candidates if c.prompt in test_prompts]
    pool = [c for c in world.candidates if c.prompt not in test_prompts]
    vote_rng = np.random.default_rng([seed, 7])
    test_cands, test_labels = [], []
    for c in test:
        for label in world.votes(c, config.test_votes, config, vote_rng):
            test_cands.append(c)
            test_labels.append(label)
    pool_votes = [world.votes(c, config.votes_per_pair, config, vote_rng) for c in pool]  # same for all strategies
    oracle_p = [world.label(c, config.tie_margin) for c in test_cands]
    achievable = decisive_accuracy(oracle_p, test_labels)

    k = config.votes_per_pair
    random_order = [int(i) for i in np.random.default_rng([seed, 11]).permutation(len(pool))]
    asked: list[int] = []
    points, fit_seconds, refits = [], 0.0, 0
    target = max(budgets)

    def fit_on_votes():
        pairs, cands = [], []
        for index in asked:
            for label in pool_votes[index]:
                pairs.append(world.pair(pool[index], label))
                cands.append(pool[index])
        return _fit(pairs, cands, cache, config, seed)

    while True:
        began = time.perf_counter()
        n_votes, model = len(asked) * k, None
        if n_votes in budgets:
            model = fit_on_votes()
            accuracy = decisive_accuracy(_predict(model, world, test_cands).p_a, test_labels)
            points.append({"votes": n_votes, "accuracy": accuracy, "share": accuracy / achievable})
        if n_votes >= target or len(asked) == len(pool):
            fit_seconds += time.perf_counter() - began
            break
        seen = set(asked)
        next_budget = next(b for b in [*budgets, target] if b > n_votes)
        first_batch = config.refit_every or budgets[0]
        if strategy == "random" or n_votes < first_batch:
            step = next_budget if strategy == "random" else first_batch
            asked += [i for i in random_order if i not in seen][: math.ceil((step - n_votes) / k)]
        else:
            model = model or fit_on_votes()
            refits += 1
            unasked = [i for i in range(len(pool)) if i not in seen]
            cands = [pool[i] for i in unasked]
            priority = _priorities(strategy, _predict(model, world, cands), cands, seed * 1000 + refits)
            order = np.argsort(-priority, kind="stable")
            batch = min(config.refit_every, next_budget - n_votes) if config.refit_every else next_budget - n_votes
            asked += [unasked[i] for i in order[: math.ceil(batch / k)]]
        fit_seconds += time.perf_counter() - began
    return {
        "strategy": strategy,
        "seed": seed,
        "achievable": achievable,
        "pool_pairs": len(pool),
        "test_votes": len(test_labels),
        "test_decisive_votes": int(sum(label != 0.5 for label in test_labels)),
        "points": points,
        "refits": refits,
        "seconds": fit_seconds,
    }


def votes_to_reach(curve: dict[int, float], level: float) -> float | None:
    """The fewest votes at which a (mean) curve reaches ``level``, linearly interpolated between budgets."""
    budgets = sorted(curve)
    previous = None
    for b in budgets:
        if curve[b] >= level:
            if previous is None:
                return float(b)
            b0, v0 = previous
            return b0 + (b - b0) * (level - v0) / (curve[b] - v0)
        previous = (b, curve[b])
    return None


def summarise(runs: list[dict], oracles: Sequence[str], strategies: Sequence[str], reference: int) -> dict:
    table: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for o in oracles:
        table[o] = {}
        for s in strategies:
            by_budget: dict[int, list[float]] = {}
            for run in runs:
                if run["oracle"] == o and run["strategy"] == s:
                    for point in run["points"]:
                        by_budget.setdefault(point["votes"], []).append(point["share"])
            table[o][s] = {b: (float(np.mean(v)), float(np.std(v))) for b, v in sorted(by_budget.items())}
    reach = {}
    for o in oracles:
        random_curve = table[o].get("random", {})
        if reference not in random_curve:
            continue
        level = random_curve[reference][0]
        reach[o] = {}
        for s in strategies:
            if s != "random":
                votes = votes_to_reach({b: m for b, (m, _) in table[o][s].items()}, level)
                reach[o][s] = {"votes": votes, "fraction": None if votes is None else votes / reference}
    return {"table": table, "reach": reach}


def print_table(summary: dict, budgets: Sequence[int], reference: int) -> None:
    head = "oracle   | selection            | " + " | ".join(f"{b:>10}" for b in budgets)
    print("Held-out decisive accuracy as a share of achievable (mean ± std over seeds), by number of votes")
    print(head)
    print("-" * len(head))
    for o, rows in summary["table"].items():
        for s, curve in rows.items():
            cells = " | ".join(f"{curve[b][0]:5.3f}±{curve[b][1]:.2f}" if b in curve else f"{'':>10}" for b in budgets)
            print(f"{o:<8} | {s:<20} | {cells}")
    print(f"\nVotes needed to reach random selection's {reference}-vote accuracy (fraction of {reference}):")
    for o, rows in summary["reach"].items():
        for s, r in rows.items():
            votes = "not reached" if r["votes"] is None else f"{r['votes']:.0f} ({r['fraction']:.2f})"
            print(f"{o:<8} | {s:<20} | {votes}")


def summarise_files(paths: Sequence[str], reference: int) -> dict:
    """The table of runs written with ``--runs`` (several files may be combined, e.g. budgets run apart)."""
    runs = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    oracles = list(dict.fromkeys(r["oracle"] for r in runs))
    strategies = list(dict.fromkeys(r["strategy"] for r in runs))
    budgets = sorted({p["votes"] for r in runs for p in r["points"]})
    summary = summarise(runs, oracles, strategies, reference)
    print_table(summary, budgets, reference)
    seeds = sorted({r["seed"] for r in runs})
    seconds = sum(r["seconds"] for r in runs)
    print(f"\n{len(runs)} runs, seeds {seeds}, {seconds / 60:.0f} min of fitting in all")
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oracles", default=",".join(DEFAULT_ORACLES), help="registered oracle names")
    parser.add_argument("--strategies", default="random,uncertainty")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--backbone", default="sandbox", help="registered reward_backbone name, CLIP folder or id")
    parser.add_argument("--per-prompt", type=int, default=CurveConfig.per_prompt)
    parser.add_argument("--votes-per-pair", type=int, default=CurveConfig.votes_per_pair)
    parser.add_argument("--test-votes", type=int, default=CurveConfig.test_votes)
    parser.add_argument(
        "--refit-every", type=int, default=CurveConfig.refit_every, help="votes between refits (0: at each budget)"
    )
    parser.add_argument("--reference", type=int, default=CurveConfig.reference)
    parser.add_argument("--head", default=None, help="quick head kind (default: rewards.quick's)")
    parser.add_argument("--ensemble-size", type=int, default=CurveConfig.ensemble_size)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write every run and the summary here")
    parser.add_argument("--runs", default=None, help="append each finished run to this JSON-lines file")
    parser.add_argument("--summarise", nargs="*", default=None, help="only print the table of these runs files")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.summarise is not None:
        return summarise_files(args.summarise, args.reference)
    config = CurveConfig(
        per_prompt=args.per_prompt,
        test_votes=args.test_votes,
        votes_per_pair=args.votes_per_pair,
        refit_every=args.refit_every,
        reference=args.reference,
        head=args.head,
        ensemble_size=args.ensemble_size,
    )
    budgets = sorted(int(b) for b in args.budgets.split(","))
    if any((config.refit_every and b % config.refit_every) or b % config.votes_per_pair for b in budgets):
        parser.error("every budget must be a multiple of --refit-every and of --votes-per-pair")
    oracles_available = registered_oracles()
    oracles = [o.strip() for o in args.oracles.split(",") if o.strip()]
    if unknown := [o for o in oracles if o not in oracles_available]:
        parser.error(f"unknown oracle(s) {', '.join(unknown)}; registered: {', '.join(sorted(oracles_available))}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    backbone = resolve_backbone(args.backbone)

    began = time.perf_counter()
    images = cached_sandbox_images(config.per_prompt)
    tag = f"{config.per_prompt}-0"
    runs = []
    cache = None
    for o in oracles:
        world = World(images, oracle_scores(o, oracles_available[o], images, tag))
        cache = cache or feature_cache(backbone, world, f"{Path(backbone).name}-{tag}")
        for seed in seeds:
            for s in strategies:
                run = run_one(world, cache, s, seed, config, budgets)
                run["oracle"] = o
                run["config"] = asdict(config)
                runs.append(run)
                if args.runs:
                    with open(args.runs, "a") as out:
                        out.write(json.dumps(run) + "\n")
                shares = " ".join(f"{p['votes']}:{p['share']:.3f}" for p in run["points"])
                print(f"[{time.perf_counter() - began:6.0f}s] {o} {s} seed {seed}: {shares}", flush=True)
    summary = summarise(runs, oracles, strategies, config.reference)
    print()
    print_table(summary, budgets, config.reference)
    from rewards.quick import DEFAULT_HEAD

    result = {
        "config": asdict(config) | {"head": config.head or DEFAULT_HEAD},
        "backbone": backbone,
        "budgets": budgets,
        "seeds": seeds,
        "summary": {
            "table": {
                o: {s: {str(b): v for b, v in c.items()} for s, c in r.items()} for o, r in summary["table"].items()
            },
            "reach": summary["reach"],
        },
        "runs": runs,
        "seconds": time.perf_counter() - began,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""Small preference data sets for the ML reward tests, rendered procedurally (fast, no pipeline, no database)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from generators.sandbox.dataset import COLOUR_NAMES, COLOURS, SHAPES, make_caption, render
from generators.sandbox.oracles import area_reward
from rewards.data import PreferencePair


def area_pairs(n_prompts: int = 16, per_prompt: int = 4, seed: int = 0, tie_margin: float = 0.05):
    """Pairs of same-prompt renders of random sizes, labelled by the area oracle (the larger shape wins)."""
    rng = np.random.default_rng(seed)
    combos = [(c, s) for c in COLOUR_NAMES for s in SHAPES][:n_prompts]
    pairs = []
    for colour, shape in combos:
        prompt = make_caption(colour, shape)
        images = [render(shape, COLOURS[colour], float(rng.integers(8, 25))) for _ in range(per_prompt)]
        rewards = [area_reward(prompt, image) for image in images]
        for i, j in combinations(range(per_prompt), 2):
            diff = rewards[i] - rewards[j]
            label = 0.5 if abs(diff) < tie_margin else float(diff > 0)
            pairs.append(PreferencePair(prompt, images[i], images[j], label, 1 - label, "sim", f"{prompt}#{i}-{j}"))
    return pairs

"""The issue's sandbox acceptance: a reward model learns a pixel preference the captions do not describe.

Pipeline images, simulated annotators who prefer the larger shape (ties within 5% of the largest area), 10% of
votes flipped, about 2,900 votes. Held-out (prompt-disjoint) decisive accuracy must reach 90% of a perfect
oracle follower's and beat the zero-shot CLIP by 15 points. About a minute of CPU time on one thread.
"""

from __future__ import annotations

import json


def test_reward_model_learns_the_area_preference(sandbox_reward_experiment):
    report, _ = sandbox_reward_experiment
    summary = {k: report[k] for k in ("votes", "trained_decisive_accuracy", "baseline_decisive_accuracy")}
    summary |= {k: report[k] for k in ("achievable_decisive_accuracy", "total_cpu_seconds")}
    print(json.dumps(summary))
    assert report["votes"] >= 2000
    assert report["test_decisive_votes"] >= 100
    assert report["fraction_of_achievable"] >= 0.9, summary
    assert report["points_over_baseline"] >= 15, summary
    assert report["human_ceiling_all_votes"]["pairs"] > 100

"""When to stop collecting: one sentence from a campaign's learning curve. No Django, no torch (web pages use it)."""

from __future__ import annotations

from collections.abc import Sequence

FLAT_GAIN_PER_100 = 0.01  # accuracy per 100 votes below which the curve counts as flat
NEAR_CEILING = 0.03


def stop_advice(points: Sequence[tuple[int, float | None]], ceiling: float | None, zero_shot: float | None) -> str:
    """One sentence that helps decide whether to keep collecting, from the curve's (votes, accuracy) points."""
    measured = [(v, a) for v, a in points if a is not None]
    if not measured:
        return "Not enough votes for a learning curve yet: keep collecting."
    votes, accuracy = measured[-1]
    if ceiling is not None and accuracy >= ceiling - NEAR_CEILING:
        return (
            f"At {votes} votes the reward model agrees with held-out votes {accuracy:.0%} of the time, within "
            f"{NEAR_CEILING:.0%} of the annotators' own agreement ({ceiling:.0%}): more votes of this kind will "
            "add little; stop collecting, or ask a sharper question."
        )
    if len(measured) < 2:
        return f"{accuracy:.0%} held-out accuracy at {votes} votes: one point only, keep collecting."
    (v0, a0), (v1, a1) = measured[-2], measured[-1]
    gain = (a1 - a0) / max(v1 - v0, 1) * 100
    head = f"{a1:.0%} held-out accuracy at {v1} votes ({gain * 100:+.1f} points per 100 votes lately"
    if zero_shot is not None:
        head += f"; zero-shot {zero_shot:.0%}"
    if ceiling is not None:
        head += f"; human ceiling {ceiling:.0%}"
    if gain < FLAT_GAIN_PER_100:
        return head + "): the curve has flattened, so more votes add little; consider stopping."
    return head + "): still rising, keep collecting."

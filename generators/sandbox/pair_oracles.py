"""Pairwise judges of simulated annotators from the sandbox pixel rewards (registered as ``pair_oracle``).

Each says "both_bad" when both rewards are below ``feedback.simulation.BOTH_BAD_BELOW``: larger - no shape drawn
in either image; colour - neither shape is near the prompt's colour; shape - neither drawn shape overlaps the
prompt's shape template; centred, even, crisp - both images far from the preferred look (always so when
neither shows a shape).
"""

from __future__ import annotations

from feedback.simulation import reward_oracle

from .oracles import (
    area_reward,
    balanced_reward,
    centred_reward,
    colour_reward,
    crisp_reward,
    even_reward,
    high_reward,
    shape_reward,
)

larger = reward_oracle(area_reward, name="larger")
colour = reward_oracle(colour_reward, name="colour")
shape = reward_oracle(shape_reward, name="shape")
centred = reward_oracle(centred_reward, name="centred")
even = reward_oracle(even_reward, name="even")
crisp = reward_oracle(crisp_reward, name="crisp")
balanced = reward_oracle(balanced_reward, name="balanced")
high = reward_oracle(high_reward, name="high")

"""The acceptance script runs end to end on tiny settings and reports before/after per seed."""

from __future__ import annotations

import json

from finetune import sandbox_acceptance
from tests.finetune.ddpo_support import TINY


def test_the_acceptance_script_reports_each_seed_and_the_spread(capsys):
    overrides = [f"--set={key}={json.dumps(value)}" for key, value in TINY.items()]
    sandbox_acceptance.main(["--reward", "area", "--seeds", "0", "1", *overrides])

    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])
    assert [row["seed"] for row in report["seeds"]] == [0, 1]
    assert all(0.0 <= row["before"] <= 1.0 and 0.0 <= row["after"] <= 1.0 for row in report["seeds"])
    assert report["overrides"]["epochs"] == TINY["epochs"]
    assert lines[-2].startswith("gain ") and "over 2 seeds" in lines[-2]

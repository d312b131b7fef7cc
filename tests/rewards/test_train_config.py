"""RewardTrainConfig (rewards/config.py): every setting bounded, errors name the field, no torch needed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rewards.config import RewardTrainConfig, RewardTrainConfigError

NUMERIC = [f.name for f in dataclasses.fields(RewardTrainConfig) if f.metadata["rule"].kind in (int, float)]


def _with(name: str, value) -> dict:
    """``{name: value}``, with ``max_steps`` null when probing ``epochs`` (exactly one of the two is set)."""
    return {name: value, "max_steps": None} if name == "epochs" else {name: value}


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", [10**30, 1e30, -(10**30), 10**400, -(10**400), float("inf"), float("nan")])
def test_every_numeric_setting_is_bounded_and_the_error_names_it(name, value):
    with pytest.raises(RewardTrainConfigError, match=f"^{name}: must be ") as caught:
        RewardTrainConfig.from_dict(_with(name, value))
    assert caught.value.field_name == name


def test_numeric_settings_cover_the_trainer_loop_settings():
    assert {"lr", "max_steps", "epochs", "batch_size", "checkpoint_every", "log_every", "eval_batch_size"} <= set(
        NUMERIC
    )


def test_built_configs_are_checked_and_frozen():
    with pytest.raises(RewardTrainConfigError, match="^log_every: must be an integer in \\[1, 1000000\\] \\(got 0\\)"):
        RewardTrainConfig(log_every=0)
    config = RewardTrainConfig(weight_decay=1, epochs=3, max_steps=None)
    assert isinstance(config.weight_decay, float) and isinstance(config.epochs, float) and config.epochs == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.5  # type: ignore[misc]
    assert RewardTrainConfig.from_dict(config.to_dict()) == config


def test_epochs_alone_means_training_by_epochs():
    config = RewardTrainConfig.from_dict({"epochs": 2})
    assert config.epochs == 2.0 and config.max_steps is None
    with pytest.raises(RewardTrainConfigError, match="^max_steps: set exactly one"):
        RewardTrainConfig.from_dict({"epochs": 2, "max_steps": 10})


def test_the_config_module_imports_no_torch():
    code = "import sys, rewards.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

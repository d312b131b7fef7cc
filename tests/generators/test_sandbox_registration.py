"""The sandbox is one registration: product modules name none of its parts; defaults come from settings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import plugins
from generators.lineage import default_eval_prompt_set
from generators.sandbox import CLIP_PATH
from generators.services import prompt_set_create
from rewards.loading import resolve_backbone
from rewards.run_configs import RewardTrainConfigSerializer

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_MODULES = [
    "rewards/model.py",
    "rewards/scoring.py",
    "rewards/loading.py",
    "rewards/run_configs.py",
    "generators/lineage.py",
    "feedback/simulation.py",
    "finetune/oracles.py",
    "finetune/run_configs.py",
    "finetune/management/commands/finetune.py",
]


@pytest.mark.parametrize("path", PRODUCT_MODULES)
def test_product_modules_import_nothing_of_the_sandbox(path):
    tree = ast.parse((ROOT / path).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if "sandbox" in name]


def test_reward_backbones_resolve_through_the_registry(settings):
    assert resolve_backbone("sandbox") == str(CLIP_PATH)  # the sandbox's registration
    assert resolve_backbone("org/clip") == "org/clip"  # a hub id as given
    settings.PLUGINS = {"reward_backbone": {"house-clip": "generators.sandbox:WEIGHTS_PATH"}}
    assert resolve_backbone("house-clip") == str(CLIP_PATH.parent)
    plugins.unregister("reward_backbone", "sandbox")
    try:
        assert resolve_backbone("sandbox") == "sandbox"  # without the registration the name means nothing
    finally:
        plugins.register("reward_backbone", "sandbox", "generators.sandbox:CLIP_PATH")


def test_the_default_reward_backbone_is_a_setting(settings):
    field = RewardTrainConfigSerializer().fields["backbone"]
    assert field.get_default() == "sandbox"
    settings.DEFAULT_REWARD_BACKBONE = "org/clip"
    assert field.get_default() == "org/clip"


@pytest.mark.django_db
def test_the_default_eval_prompt_set_is_a_setting(settings):
    prompt_set_create(name="a-eval", split="eval", prompts=["a"])
    house = prompt_set_create(name="house-eval", split="eval", prompts=["b"])
    assert default_eval_prompt_set().name == "a-eval"  # no sandbox-eval here: the first eval set
    settings.DEFAULT_EVAL_PROMPT_SET = "house-eval"
    assert default_eval_prompt_set() == house

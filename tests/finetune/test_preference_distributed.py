"""The preference trainer under accelerate with two CPU processes (gloo, launched by torchrun): identical adapters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from finetune.lora import WEIGHT_NAME
from tests.finetune.test_ddpo_distributed import _free_port

WORKER = Path(__file__).with_name("preference_distributed_worker.py")


def test_two_process_kto_run_with_accumulation_ends_with_identical_adapters(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    completed = subprocess.run(
        [*command, str(_free_port()), str(WORKER), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == {"steps": 3, "processes": 2, "checkpoints": 4, "grid": True}  # main only: steps 0, 1, 2, 3
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert any(v.abs().sum() > 0 for k, v in rank0.items() if "lora_B" in k)  # it did train
    assert (tmp_path / "adapter" / WEIGHT_NAME).exists()

"""The ``diagnostic`` job: a worker health check for the GPU fleet. No Django imports.

It reports the worker's host, Python/torch versions and devices, then walks N steps: each step
times a matrix multiplication on the chosen device (GFLOP/s), logs metrics, checkpoints its step
and reports progress. A redelivered run resumes after the last checkpointed step.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass

from core import devices
from core.jobs import JobCancelled, JobContext, JobFailed


@dataclass(frozen=True)
class DiagnosticConfig:
    steps: int = 10
    step_seconds: float = 0.2
    matrix_size: int = 256
    device: str = "auto"
    fail_at_step: int | None = None


def environment_report(device: str = "auto") -> dict:
    """Host, versions and the accelerators this process can see."""
    import torch

    devices = [{"name": "cpu", "type": "cpu", "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append(
                {
                    "name": f"cuda:{index}",
                    "type": "cuda",
                    "model": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 2),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "device": resolve_device(device),
        "devices": devices,
    }


def resolve_device(device: str) -> str:
    try:
        return devices.resolve_device(device)
    except devices.DeviceUnavailable as exc:
        raise JobFailed(str(exc)) from exc


def matmul_gflops(device: str, size: int) -> float:
    """Time one ``size``×``size`` float32 matrix product on ``device`` and return GFLOP/s."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    (a @ b).sum().item()
    elapsed = max(time.perf_counter() - start, 1e-9)
    return 2 * size**3 / elapsed / 1e9


def run_diagnostic(config: DiagnosticConfig, ctx: JobContext) -> dict:
    """Run the health check; resumable from the last checkpointed step."""
    checkpoint = ctx.load_checkpoint()
    start_step = json.loads(checkpoint)["step"] if checkpoint else 0
    report = environment_report(config.device)
    device = report["device"]
    ctx.save_artifact(f"environment-attempt-{ctx.attempt}.json", json.dumps(report, indent=2).encode(), kind="report")
    rates: list[float] = []
    for step in range(start_step + 1, config.steps + 1):
        if ctx.should_stop():
            raise JobCancelled(f"stopped before step {step}")
        if config.fail_at_step == step:
            raise JobFailed(f"diagnostic failure drill: fail_at_step={step} was requested")
        began = time.perf_counter()
        rate = matmul_gflops(device, config.matrix_size)
        rates.append(rate)
        time.sleep(max(0.0, config.step_seconds - (time.perf_counter() - began)))
        ctx.log_metrics(
            step,
            {"matmul_gflops": rate, "step_seconds": time.perf_counter() - began, "attempt": ctx.attempt},
        )
        ctx.save_checkpoint(json.dumps({"step": step}).encode())
        ctx.report_progress(step / config.steps, f"step {step} of {config.steps}")
    return {
        "host": report["host"],
        "torch": report["torch"],
        "device": device,
        "devices": [d["name"] for d in report["devices"]],
        "steps": config.steps,
        "resumed_from_step": start_step,
        "mean_gflops": round(sum(rates) / len(rates), 3) if rates else None,
        "config": asdict(config),
    }

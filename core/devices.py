"""Choosing the torch device a job runs on. No Django imports (used by ML code on workers)."""

from __future__ import annotations


class DeviceUnavailable(ValueError):
    """The requested device does not exist on this worker."""


def resolve_device(device: str = "auto") -> str:
    """``auto`` is CUDA when present, else the CPU; asking for CUDA on a CPU-only worker is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable(f"Device {device!r} was asked for, but this worker has no CUDA device.")
    return device


def limit_torch_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process at ``threads`` (0 leaves torch's default: one per core)."""
    if threads <= 0:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)

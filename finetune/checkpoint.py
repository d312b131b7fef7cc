"""Trainer checkpoints as bytes (adapter, optimizer, RNG states, progress, history), tagged with their format."""

from __future__ import annotations

import io
from typing import Any

import torch

from core.jobs import JobFailed

FORMAT = "imagerlhf-ddpo-checkpoint/1"


def dumps(payload: dict[str, Any], fmt: str = FORMAT) -> bytes:
    buffer = io.BytesIO()
    torch.save({"format": fmt, **payload}, buffer)
    return buffer.getvalue()


def loads(data: bytes, fmt: str = FORMAT) -> dict[str, Any]:
    """Read a checkpoint written by :func:`dumps`; anything else is a :class:`JobFailed`."""
    try:
        # weights_only=False: the payload holds RNG states (tuples, numpy arrays) written by this trainer itself.
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # noqa: S614
    except Exception as exc:
        raise JobFailed(f"The checkpoint could not be read ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise JobFailed(f"The checkpoint is not a {fmt.split('/')[0]!r} checkpoint of this version.")
    return payload


def config_mismatch(saved: dict[str, Any], current: dict[str, Any], may_differ: set[str]) -> str | None:
    """First field whose value differs between the checkpoint's config and this run's, or None."""
    for key in sorted(set(saved) | set(current)):
        if key not in may_differ and saved.get(key) != current.get(key):
            return key
    return None

"""The registry of run kinds: for each kind, its config schema, its queue and its executor.

Apps register their kinds in ``AppConfig.ready()``. The executor is a dotted path imported only
inside the worker, so web processes never import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from core.validation import StrictSerializer

if TYPE_CHECKING:
    from core.jobs import JobContext
    from core.models import Run

Executor = Callable[["Run", "JobContext"], dict]


@dataclass(frozen=True)
class RunKind:
    name: str
    queue: str
    config_serializer: type[serializers.Serializer]
    executor_path: str
    description: str = ""

    def validate_config(self, config: Any) -> dict:
        """The validated config with defaults filled in; raises DRF ValidationError naming the field."""
        serializer = self.config_serializer(data=config)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def executor(self) -> Executor:
        module_name, _, attr = self.executor_path.rpartition(".")
        return getattr(import_module(module_name), attr)


_REGISTRY: dict[str, RunKind] = {}


class UnknownRunKind(Exception):
    pass


def register(kind: RunKind) -> None:
    _REGISTRY[kind.name] = kind


def get(name: str) -> RunKind:
    try:
        return _REGISTRY[name]
    except KeyError:
        available = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownRunKind(f"Run kind {name!r} is not available. Available kinds: {available}.") from None


def available() -> list[RunKind]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


class DiagnosticConfigSerializer(StrictSerializer):
    steps = serializers.IntegerField(min_value=1, max_value=100_000, default=10)
    step_seconds = serializers.FloatField(min_value=0.0, max_value=3600.0, default=0.2)
    matrix_size = serializers.IntegerField(min_value=8, max_value=16_384, default=256)
    device = serializers.RegexField(r"^(auto|cpu|cuda(:\d+)?)$", default="auto", max_length=16)
    fail_at_step = serializers.IntegerField(
        min_value=1, max_value=100_000, required=False, allow_null=True, default=None
    )


def register_builtin_kinds() -> None:
    register(
        RunKind(
            name="diagnostic",
            queue="gpu",
            config_serializer=DiagnosticConfigSerializer,
            executor_path="core.executors.diagnostic",
            description="Worker health check: host, torch, devices, matmul GFLOP/s per step.",
        )
    )

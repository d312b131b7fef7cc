"""Fixtures for generation tests: the committed sandbox pipeline, loaded once per session."""

from __future__ import annotations

import pytest

from generators.pipeline import PipelineSpec, default_cache
from generators.sandbox import PIPELINE_PATH


@pytest.fixture(scope="session")
def sandbox_spec() -> PipelineSpec:
    return PipelineSpec(source=str(PIPELINE_PATH), pipeline_class="StableDiffusionPipeline", device="cpu")


@pytest.fixture(scope="session")
def sandbox_pipe(sandbox_spec):
    return default_cache.get(sandbox_spec)

"""Optional experiment tracking (core/tracking.py): with EXPERIMENT_TRACKER=tensorboard a trainer run's metric
points also go to TensorBoard event files under TRACKING_DIR/run-<id>/, kept as the run's tensorboard.zip; off by
default, and other run kinds are not tracked."""

from __future__ import annotations

import io
import zipfile

import pytest

from core import services
from core.models import Artifact, Run
from core.run_execution import run_execute
from tests.rewards.test_reward_runs import _dataset

pytest.importorskip("tensorboard", reason="the tracking extra: pip install -e '.[tracking]'")
pytestmark = pytest.mark.django_db


def _reward_run(tmp_path, users) -> Run:
    dataset = _dataset(tmp_path)
    config = {"dataset": dataset.pk, "max_steps": 6, "eval_every": 3, "batch_size": 16, "warmup_steps": 1}
    config |= {"log_every": 2, "head": "none"}
    return services.run_create(kind="reward_train", config=config, created_by=users["engineer"])


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_trainer_runs_metrics_go_to_tensorboard_when_it_is_on(settings, tmp_path, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EXPERIMENT_TRACKER = "tensorboard"
    settings.TRACKING_DIR = tmp_path / "tracking"
    run = _reward_run(tmp_path, users)

    assert run_execute(run_id=run.pk, worker="inline") == "succeeded", Run.objects.get(pk=run.pk).error

    folder = tmp_path / "tracking" / f"run-{run.pk}"
    assert list(folder.glob("events.out.tfevents.*"))
    scalars = _scalars(folder)
    stored = list(run.metric_points.filter(key="loss").order_by("step").values_list("step", "value"))
    assert [step for step, _ in scalars["loss"]] == [step for step, _ in stored] == [2, 4, 6]
    assert [value for _, value in scalars["loss"]] == pytest.approx([value for _, value in stored], rel=1e-6)
    assert set(scalars) == set(run.metric_points.values_list("key", flat=True))  # every metric the run recorded

    artifact = Artifact.objects.get(run=run, name="tensorboard.zip")
    with artifact.file.open("rb") as handle, zipfile.ZipFile(io.BytesIO(handle.read())) as archive:
        assert any(name.startswith("events.out.tfevents.") for name in archive.namelist())


def test_nothing_is_tracked_when_it_is_off_or_for_other_kinds(settings, tmp_path, users):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRACKING_DIR = tmp_path / "tracking"
    assert settings.EXPERIMENT_TRACKER == ""  # the default
    run = _reward_run(tmp_path, users)
    assert run_execute(run_id=run.pk, worker="inline") == "succeeded"
    assert not (tmp_path / "tracking").exists() and not Artifact.objects.filter(name="tensorboard.zip").exists()

    settings.EXPERIMENT_TRACKER = "tensorboard"
    diagnostic = services.run_create(kind="diagnostic", config={"steps": 2}, created_by=users["engineer"])
    assert run_execute(run_id=diagnostic.pk, worker="inline") == "succeeded"
    assert diagnostic.metric_points.exists() and not (tmp_path / "tracking").exists()


def test_an_unknown_tracker_is_refused_at_start_up(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "EXPERIMENT_TRACKER": "mlflow", "PLATFORM_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "EXPERIMENT_TRACKER='mlflow': use tensorboard, or leave it empty (off)." in done.stderr

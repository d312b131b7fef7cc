"""Screening a run's images with a registered safety screen (workers: the screen is imported here).

The ``generate`` run calls :func:`screen_run_images` with the ids of every image of its keys once the missing
ones are made: images that already have a verdict of the screen are skipped (so a rerun judges nothing twice),
the rest are read from storage and judged a batch at a time, cancel checked between batches, and the verdicts
stored through ``services.image_screenings_record``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.jobs import JobCancelled, JobContext, JobFailed
from core.models import Run
from generators import selectors, services
from generators.models import GeneratedImage
from generators.safety_screens import ScreenError, resolve_screen, screen_images


class ScaledProgress:
    """A JobContext whose progress reports land in [start, end] of the run's bar."""

    def __init__(self, ctx: JobContext, start: float, end: float) -> None:
        self._ctx, self._start, self._end = ctx, start, end

    def report_progress(self, fraction: float, message: str = "") -> None:
        self._ctx.report_progress(self._start + (self._end - self._start) * fraction, message)

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)


def pixels_of(image: GeneratedImage) -> np.ndarray:
    """The stored PNG of ``image`` as an HxWx3 uint8 array."""
    try:
        with image.file.open("rb") as handle, Image.open(handle) as opened:
            return np.asarray(opened.convert("RGB"))
    except FileNotFoundError as exc:
        raise JobFailed(f"The file of image {image.pk} is missing from storage: cannot screen it.") from exc


def screen_run_images(
    *, run: Run | None, screen: str, image_ids: Sequence[int], batch_size: int, ctx: JobContext
) -> dict:
    """Judge the images of ``image_ids`` that ``screen`` has not judged yet; returns ``{"screen", "screened" (new
    verdicts stored now), "flagged" (images of ``image_ids`` the screen flagged, now or before)}``."""
    todo = selectors.unscreened(image_ids, screen)
    screened = 0
    if todo:
        try:
            check = resolve_screen(screen)
        except ScreenError as exc:
            raise JobFailed(str(exc)) from exc
        for start in range(0, len(todo), batch_size):
            if ctx.should_stop():
                raise JobCancelled(f"stopped after screening {start} of {len(todo)} images")
            batch = todo[start : start + batch_size]
            rows = selectors.images().in_bulk(batch)
            try:
                verdicts = screen_images(
                    check, [(rows[pk].prompt.text, pixels_of(rows[pk])) for pk in batch], name=screen
                )
            except ScreenError as exc:
                raise JobFailed(str(exc)) from exc
            screened += services.image_screenings_record(
                run=run, screen=screen, verdicts=dict(zip(batch, verdicts, strict=True))
            )
            done = start + len(batch)
            ctx.report_progress(done / len(todo), f"screened {done} of {len(todo)} images ({screen})")
    return {"screen": screen, "screened": screened, "flagged": len(selectors.screen_flags(image_ids, screen))}

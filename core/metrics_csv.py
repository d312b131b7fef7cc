"""Runs' metric points as CSV: ``GET /api/v1/runs/metrics.csv?runs=3,7,9`` (one row per stored point).

The file is long-format, ``run,key,step,value,attempt``, ordered by run, key and step, with an empty ``value`` where
the stored value is null (a loss that went NaN): reading it back gives exactly the stored points (a test round-trips
it), and it loads straight into pandas (``pd.read_csv(...).pivot_table(index="step", columns=["run", "key"])``).
"""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.views import APIView

from core import selectors
from core.models import MetricPoint
from core.permissions import EngineerWritesStaffReads

MAX_RUNS = 20
COLUMNS = ("run", "key", "step", "value", "attempt")


def parse_run_ids(text: str | None) -> list[int]:
    """``"3,7,9"`` → ``[3, 7, 9]`` (distinct, in order); anything else is a ValidationError naming ``runs``."""
    parts = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not parts or not all(part.isascii() and part.isdigit() and len(part) <= 18 for part in parts):
        raise ValidationError({"runs": ["Give run ids separated by commas, e.g. ?runs=3,7,9."]})
    ids = list(dict.fromkeys(int(part) for part in parts))
    if len(ids) > MAX_RUNS:
        raise ValidationError({"runs": [f"At most {MAX_RUNS} runs at a time."]})
    return ids


def metrics_csv(run_ids: list[int]) -> str:
    """The stored points of ``run_ids`` as CSV text (header first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    points = MetricPoint.objects.filter(run_id__in=run_ids).order_by("run_id", "key", "step")
    for run_id, key, step, value, attempt in points.values_list("run_id", "key", "step", "value", "attempt"):
        writer.writerow([run_id, key, step, "" if value is None else repr(float(value)), attempt])
    return buffer.getvalue()


class RunMetricsCsvView(APIView):
    """Every stored metric point of up to 20 runs, as one CSV file."""

    permission_classes = [EngineerWritesStaffReads]

    @extend_schema(
        parameters=[OpenApiParameter("runs", str, required=True, description="run ids separated by commas")],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        ids = parse_run_ids(request.query_params.get("runs"))
        found = set(selectors.runs_visible_to(request.user).filter(pk__in=ids).values_list("pk", flat=True))
        missing = [pk for pk in ids if pk not in found]
        if missing:
            raise NotFound(f"No run {', '.join(map(str, missing))}.")
        response = HttpResponse(metrics_csv(ids), content_type="text/csv; charset=utf-8")
        name = "-".join(map(str, ids)) if len(ids) <= 5 else f"{len(ids)}-runs"
        response["Content-Disposition"] = f'attachment; filename="metrics-runs-{name}.csv"'
        return response

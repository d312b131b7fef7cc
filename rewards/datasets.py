"""Summary figures of a list of Pick-a-Pic rows (no Django): what a dataset holds."""

from __future__ import annotations

from collections.abc import Sequence

from feedback.pickapic import PickapicRow


def dataset_stats(rows: Sequence[PickapicRow]) -> dict:
    """Rows, prompts, decisive rows, ties (both-bad among them), annotators and generator names."""
    ties = sum(1 for row in rows if row.label_0 == row.label_1)
    return {
        "rows": len(rows),
        "prompts": len({row.caption for row in rows}),
        "decisive": len(rows) - ties,
        "ties": ties,
        "both_bad": sum(1 for row in rows if row.both_bad),
        "annotators": len({row.user_id for row in rows}),
        "models": sorted({row.model_0 for row in rows} | {row.model_1 for row in rows}),
    }

"""Reads of the rewards app."""

from __future__ import annotations

from django.db.models import QuerySet

from rewards.models import PreferenceDataset, RewardModel


def datasets() -> QuerySet[PreferenceDataset]:
    return PreferenceDataset.objects.prefetch_related("campaigns").select_related("created_by")


def reward_models() -> QuerySet[RewardModel]:
    return RewardModel.objects.select_related("dataset", "training_run", "artifact", "created_by")

"""What a fine-tuning run made: the new model version, from which parent, against which reward."""

from __future__ import annotations

from django.db import models


class FineTune(models.Model):
    """One finished ``finetune`` run: parent version → new version, the reward it optimised, its figures."""

    run = models.OneToOneField("core.Run", on_delete=models.PROTECT, related_name="finetune")
    parent = models.ForeignKey("generators.ModelVersion", on_delete=models.PROTECT, related_name="finetunes_from")
    version = models.OneToOneField("generators.ModelVersion", on_delete=models.PROTECT, related_name="finetune")
    reward_model = models.ForeignKey(
        "rewards.RewardModel", null=True, blank=True, on_delete=models.PROTECT, related_name="finetunes"
    )
    oracle = models.CharField(max_length=300, blank=True, default="", help_text="pixel oracle used as the reward")
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.parent} → {self.version}"

"""What a fine-tuning run made: the new model version, from which parent, against which reward."""

from __future__ import annotations

from django.db import models


class Algorithm(models.TextChoices):
    DDPO = "ddpo", "DDPO against a reward"
    FLOW_GRPO = "flow_grpo", "Flow-GRPO against a reward (flow-matching models)"
    DIFFUSION_DPO = "diffusion_dpo", "Diffusion-DPO from vote pairs"
    DIFFUSION_KTO = "diffusion_kto", "Diffusion-KTO from liked and disliked images"


class FineTune(models.Model):
    """One finished fine-tuning run (``finetune``: DDPO or Flow-GRPO against a reward; ``preference_tune``:
    Diffusion-DPO or -KTO straight from a dataset of votes): parent version → new version, what it learned from, its
    figures."""

    run = models.OneToOneField("core.Run", on_delete=models.PROTECT, related_name="finetune")
    parent = models.ForeignKey("generators.ModelVersion", on_delete=models.PROTECT, related_name="finetunes_from")
    version = models.OneToOneField("generators.ModelVersion", on_delete=models.PROTECT, related_name="finetune")
    reward_model = models.ForeignKey(
        "rewards.RewardModel", null=True, blank=True, on_delete=models.PROTECT, related_name="finetunes"
    )
    oracle = models.CharField(max_length=300, blank=True, default="", help_text="pixel oracle used as the reward")
    algorithm = models.CharField(max_length=20, choices=Algorithm.choices, default=Algorithm.DDPO)
    dataset = models.ForeignKey(
        "rewards.PreferenceDataset",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="finetunes",
        help_text="the votes a preference fine-tune learned from",
    )
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.parent} → {self.version}"

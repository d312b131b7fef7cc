"""REST read of a campaign's learning curve (the rewards app owns the refits that measure it)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import IsEngineerOrReviewer
from feedback.models import Campaign
from rewards import selectors


class CurvePointSerializer(serializers.Serializer):
    votes = serializers.IntegerField(help_text="the campaign's first n votes")
    train_votes = serializers.IntegerField(help_text="of which on training prompts")
    accuracy = serializers.FloatField(allow_null=True, help_text="decisive accuracy on the held-out prompts")


class LatestRefitSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    votes = serializers.IntegerField()
    test_votes = serializers.IntegerField()
    zero_shot_accuracy = serializers.FloatField(allow_null=True)
    human_ceiling = serializers.FloatField(allow_null=True)
    ceiling_pairs = serializers.IntegerField()
    priorities = serializers.IntegerField()
    priority_source = serializers.CharField()
    points = CurvePointSerializer(many=True)


class LearningCurveSerializer(serializers.Serializer):
    campaign = serializers.IntegerField()
    selection = serializers.CharField()
    refit_every = serializers.IntegerField()
    refit_running = serializers.BooleanField()
    latest = LatestRefitSerializer(allow_null=True)
    history = inline_serializer(
        "RefitHistoryPoint",
        {"run": serializers.IntegerField(), "votes": serializers.IntegerField(), "accuracy": serializers.FloatField()},
        many=True,
    )
    advice = serializers.CharField(help_text="whether more votes are worth collecting, in one sentence")


class CampaignLearningCurveView(APIView):
    """A campaign's learning curve: held-out accuracy of its quick reward model against votes, next to zero-shot
    and the human ceiling (refitted every ``refit_every`` votes)."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(responses={200: LearningCurveSerializer})
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return Response(selectors.campaign_learning_curve(campaign))

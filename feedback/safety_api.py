"""Content safety REST: raters report an image they were shown; engineers review the withheld images."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.ids import IdField
from core.permissions import IsEngineer
from core.validation import StrictSerializer
from feedback import safety, safety_selectors
from feedback.api import Raters
from feedback.models import FlagState, ImageFlag


class ReportInputSerializer(StrictSerializer):
    assignment = IdField(help_text="the assignment on screen (from `next/`)")
    side = serializers.ChoiceField(choices=safety.REPORT_SIDES, help_text="which image: left, right or both")
    reason = serializers.ChoiceField(choices=safety.PERSON_REASONS)
    note = serializers.CharField(max_length=safety.NOTE_MAX_LENGTH, required=False, allow_blank=True, default="")


class ReportOutcomeSerializer(serializers.Serializer):
    images = serializers.IntegerField(help_text="images the report named")
    withheld = serializers.IntegerField(help_text="of those, newly withheld by this report")
    pairs_withdrawn = serializers.IntegerField(help_text="pairs (of any campaign) withdrawn by this report")
    created = serializers.BooleanField(help_text="false: you had reported these images already")


class ReportCreateView(APIView):
    """Report an image of your assignment as unsafe or offensive: every pair that shows it leaves every campaign at
    once (never handed out again, its votes out of training) until an engineer reviews it. 201 new, 200 the same
    report again, 404 an assignment that is not yours."""

    permission_classes = [Raters]

    @extend_schema(
        request=ReportInputSerializer, responses={201: ReportOutcomeSerializer, 200: ReportOutcomeSerializer}
    )
    def post(self, request):
        data = ReportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        outcome = safety.image_report(
            reporter=request.user,
            assignment_id=fields["assignment"],
            side=fields["side"],
            reason=fields["reason"],
            note=fields["note"],
        )
        return Response(
            ReportOutcomeSerializer(outcome).data,
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )


class ImageReportSerializer(serializers.Serializer):
    reporter = serializers.CharField(source="reporter.username", allow_null=True, default=None)
    screen = serializers.CharField(help_text="the safety screen that flagged it (blank: a person reported it)")
    reason = serializers.CharField()
    note = serializers.CharField()
    campaign = serializers.IntegerField(source="campaign_id", allow_null=True)
    campaign_name = serializers.CharField(source="campaign.name", allow_null=True, default=None)
    created_at = serializers.DateTimeField()


class ImageFlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    image = serializers.IntegerField(source="image_id")
    image_url = serializers.SerializerMethodField()
    prompt = serializers.CharField(source="image.prompt.text")
    model_version = serializers.IntegerField(source="image.model_version_id")
    model_version_name = serializers.CharField(source="image.model_version.name")
    seed = serializers.IntegerField(source="image.seed")
    state = serializers.ChoiceField(choices=FlagState.choices)
    pairs = serializers.IntegerField(help_text="pairs of any campaign that show the image")
    created_at = serializers.DateTimeField()
    reviewed_by = serializers.CharField(source="reviewed_by.username", allow_null=True, default=None)
    reviewed_at = serializers.DateTimeField(allow_null=True)
    review_note = serializers.CharField()
    reports = ImageReportSerializer(many=True)

    def get_image_url(self, flag) -> str:
        return reverse("api-image-file", args=[flag.image_id])


class ImageFlagListView(generics.ListAPIView):
    """Withheld images with their reports, those awaiting review first (``?state=withdrawn|confirmed|cleared``)."""

    permission_classes = [IsEngineer]
    serializer_class = ImageFlagSerializer

    @extend_schema(parameters=[OpenApiParameter("state", str, enum=FlagState.values)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        state = self.request.query_params.get("state") or None
        if state is not None and state not in FlagState.values:
            raise serializers.ValidationError({"state": [f"Choose one of {', '.join(FlagState.values)}."]})
        return safety_selectors.image_flags(state)


class ReviewInputSerializer(StrictSerializer):
    decision = serializers.ChoiceField(
        choices=list(safety.REVIEW_DECISIONS),
        help_text="confirm: keep the image out; clear: return its pairs to their campaigns",
    )
    note = serializers.CharField(max_length=safety.NOTE_MAX_LENGTH, required=False, allow_blank=True, default="")


class ImageFlagReviewView(APIView):
    """An engineer's decision on a withheld image (either decision may be changed later)."""

    permission_classes = [IsEngineer]

    @extend_schema(request=ReviewInputSerializer, responses=ImageFlagSerializer)
    def post(self, request, pk: int):
        get_object_or_404(ImageFlag, pk=pk)
        data = ReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        safety.image_flag_review(flag_id=pk, reviewer=request.user, **data.validated_data)
        return Response(ImageFlagSerializer(safety_selectors.image_flags().get(pk=pk)).data)

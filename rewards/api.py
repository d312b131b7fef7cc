"""REST API of the rewards app: preference datasets and reward models.

Training is a run: ``POST /api/v1/runs/ {"kind": "reward_train", "config": {...}}``; scoring a model
version on a prompt set is a run of kind ``evaluate``.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.ids import BoundedPrimaryKeyRelatedField, IdField
from core.permissions import EngineerWritesStaffReads, IsEngineer
from core.validation import StrictSerializer
from feedback import services as feedback_services
from feedback.models import Campaign
from rewards import audit, selectors, services
from rewards.models import PreferenceDataset, RewardModel
from rewards.run_configs import EXCLUDE_ANNOTATORS_HELP, check_annotator_ids


class DatasetSerializer(serializers.ModelSerializer):
    campaigns = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = PreferenceDataset
        fields = ["id", "name", "source", "criterion", "state", "error", "import_run", "rows", "stats", "sha256"]
        fields += ["size"]
        fields += ["campaigns", "options", "created_by", "created_at"]


CRITERION_HELP = "only the votes on this question (a campaign's question key); empty: every question's votes"


class DatasetSnapshotSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    campaigns = serializers.PrimaryKeyRelatedField(queryset=Campaign.objects.all(), many=True, allow_empty=False)
    include_flagged = serializers.BooleanField(default=False)
    gold_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.7)
    min_gold = serializers.IntegerField(min_value=1, max_value=10_000, default=5)
    criterion = serializers.CharField(
        max_length=100, required=False, default="", help_text=CRITERION_HELP + " (every campaign must ask it)"
    )
    exclude_annotators = serializers.ListField(
        child=IdField(), required=False, max_length=1000, help_text=EXCLUDE_ANNOTATORS_HELP
    )

    def validate_exclude_annotators(self, ids: list[int]) -> list[int]:
        return check_annotator_ids(ids)


class DatasetUploadSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    criterion = serializers.CharField(
        max_length=100, required=False, default="", help_text=CRITERION_HELP + " (the file's criterion column)"
    )
    file = serializers.FileField(
        help_text="a Pick-a-Pic-schema Parquet file, at most UPLOAD_MAX_BYTES (default 2 GiB)",
        allow_empty_file=False,
        use_url=False,
    )


class DatasetListView(generics.ListAPIView):
    """Preference datasets. Engineers snapshot campaigns' votes (JSON: ``name``, ``campaigns``; answers 201
    with a ready dataset) or upload a Pick-a-Pic Parquet file (multipart: ``name``, ``file``; answers 202
    with an ``importing`` dataset whose ``import_run`` validates the rows, then marks it ``ready`` or
    ``failed`` with an ``error``)."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = DatasetSerializer
    parser_classes = [JSONParser, MultiPartParser]

    def get_queryset(self):
        return selectors.datasets()

    @extend_schema(
        request={"application/json": DatasetSnapshotSerializer, "multipart/form-data": DatasetUploadSerializer},
        responses={
            201: OpenApiResponse(DatasetSerializer, description="snapshot taken: a ready dataset"),
            202: OpenApiResponse(DatasetSerializer, description="upload stored: an importing dataset and its run"),
            413: OpenApiResponse(
                OpenApiTypes.OBJECT, description="{file: [the upload is larger than UPLOAD_MAX_BYTES]}"
            ),
        },
    )
    def post(self, request):
        if request.content_type.startswith("multipart/"):
            data = DatasetUploadSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            upload = data.validated_data
            dataset = services.dataset_upload_accept(
                name=upload["name"], upload=upload["file"], criterion=upload["criterion"], created_by=request.user
            )
            return Response(DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)
        if not isinstance(request.data, dict):
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        "Send a JSON object with name and campaigns, or a multipart form with name and file."
                    ]
                }
            )
        data = DatasetSnapshotSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_snapshot(created_by=request.user, **data.validated_data)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(generics.RetrieveAPIView):
    permission_classes = [EngineerWritesStaffReads]
    serializer_class = DatasetSerializer

    def get_queryset(self):
        return selectors.datasets()


class RewardModelSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = RewardModel
        fields = ["id", "name", "backbone", "dataset", "training_run", "artifact", "metrics", "created_by"]
        fields += ["created_at"]


class ZeroShotRewardSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    backbone = serializers.CharField(max_length=500, help_text="CLIP or PickScore hub id, local folder, or 'sandbox'")


class RewardModelListView(generics.ListAPIView):
    """Reward models with their dataset, training run and evaluation metrics. Engineers register a zero-shot
    one (cold start: a CLIP or PickScore-format checkpoint scored as is); trained ones come from runs."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = RewardModelSerializer

    def get_queryset(self):
        return selectors.reward_models()

    @extend_schema(request=ZeroShotRewardSerializer, responses={201: RewardModelSerializer})
    def post(self, request):
        data = ZeroShotRewardSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward_model = services.reward_model_register(created_by=request.user, **data.validated_data)
        return Response(RewardModelSerializer(reward_model).data, status=status.HTTP_201_CREATED)


class RewardModelDetailView(generics.RetrieveAPIView):
    permission_classes = [EngineerWritesStaffReads]
    serializer_class = RewardModelSerializer

    def get_queryset(self):
        return selectors.reward_models()


class AuditCampaignSerializer(StrictSerializer):
    reward_model = BoundedPrimaryKeyRelatedField(queryset=RewardModel.objects.all())
    margin = serializers.FloatField(min_value=0.5, max_value=1.0, default=0.8)
    name = serializers.CharField(max_length=200)
    votes_per_pair = serializers.IntegerField(min_value=1, max_value=100, default=3)


class AuditCampaignView(APIView):
    """Turn a campaign's reward-hacking audit (pairs where the reward model strongly prefers the side people
    rejected) into a new ``collect`` campaign, so the reward model can be retrained on its own mistakes."""

    permission_classes = [IsEngineer]  # it creates a campaign: engineers only

    @extend_schema(request=AuditCampaignSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        source = get_object_or_404(Campaign, pk=pk)
        data = AuditCampaignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        found = audit.reward_hacking_audit(
            source, data.validated_data["reward_model"], margin=data.validated_data["margin"]
        )
        campaign = feedback_services.campaign_from_pairs(
            source=source,
            pairs=[d.pair for d in found.disagreements],
            name=data.validated_data["name"],
            votes_per_pair=data.validated_data["votes_per_pair"],
            created_by=request.user,
        )
        return Response({"campaign": campaign.pk, "pairs": len(found.disagreements)}, status=status.HTTP_201_CREATED)

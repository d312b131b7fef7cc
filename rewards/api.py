"""REST API of the rewards app: preference datasets and reward models.

Training is a run: ``POST /api/v1/runs/ {"kind": "reward_train", "config": {...}}``; scoring a model
version on a prompt set is a run of kind ``evaluate``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import EngineerWritesStaffReads, IsEngineerOrReviewer
from core.validation import StrictSerializer
from feedback import services as feedback_services
from feedback.models import Campaign
from rewards import audit, selectors, services
from rewards.models import PreferenceDataset, RewardModel

MAX_UPLOAD_BYTES = 2 * 1024**3


class DatasetSerializer(serializers.ModelSerializer):
    campaigns = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = PreferenceDataset
        fields = ["id", "name", "source", "rows", "stats", "sha256", "size", "campaigns", "options"]
        fields += ["created_by", "created_at"]


class DatasetSnapshotSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    campaigns = serializers.PrimaryKeyRelatedField(queryset=Campaign.objects.all(), many=True, allow_empty=False)
    include_flagged = serializers.BooleanField(default=False)
    gold_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.7)
    min_gold = serializers.IntegerField(min_value=1, max_value=10_000, default=5)


class DatasetUploadSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    file = serializers.FileField(help_text="a Pick-a-Pic-schema Parquet file")

    def validate_file(self, upload):
        if upload.size > MAX_UPLOAD_BYTES:
            raise serializers.ValidationError("At most 2 GiB per upload; import larger files with manage.py.")
        return upload


class DatasetListView(generics.ListAPIView):
    """Preference datasets. Engineers snapshot campaigns' votes (JSON) or upload a Pick-a-Pic Parquet file
    (multipart, ``name`` and ``file``)."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = DatasetSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        return selectors.datasets()

    @extend_schema(request=DatasetSnapshotSerializer, responses={201: DatasetSerializer})
    def post(self, request):
        if "file" in request.data:
            data = DatasetUploadSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            dataset = self._import_upload(data.validated_data, request.user)
        else:
            data = DatasetSnapshotSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            dataset = services.dataset_snapshot(created_by=request.user, **data.validated_data)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @staticmethod
    def _import_upload(validated: dict, user) -> PreferenceDataset:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "upload.parquet"
            with path.open("wb") as sink:
                for chunk in validated["file"].chunks():
                    sink.write(chunk)
            try:
                return services.dataset_import(name=validated["name"], path=path, created_by=user)
            except services.ValidationError as exc:
                if hasattr(exc, "error_dict") and "path" in exc.error_dict:
                    raise services.ValidationError({"file": exc.error_dict["path"]}) from exc
                raise


class DatasetDetailView(generics.RetrieveAPIView):
    permission_classes = [EngineerWritesStaffReads]
    serializer_class = DatasetSerializer

    def get_queryset(self):
        return selectors.datasets()


class RewardModelSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
    reward_model = serializers.PrimaryKeyRelatedField(queryset=RewardModel.objects.all())
    margin = serializers.FloatField(min_value=0.5, max_value=1.0, default=0.8)
    name = serializers.CharField(max_length=200)
    votes_per_pair = serializers.IntegerField(min_value=1, max_value=100, default=3)


class AuditCampaignView(APIView):
    """Turn a campaign's reward-hacking audit (pairs where the reward model strongly prefers the side people
    rejected) into a new ``collect`` campaign, so the reward model can be retrained on its own mistakes."""

    permission_classes = [IsEngineerOrReviewer]

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

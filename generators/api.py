"""Read API for base models, model versions and prompt sets (engineers and reviewers)."""

from rest_framework import generics, serializers

from core.permissions import EngineerWritesStaffReads
from generators import selectors
from generators.models import BaseModel, ModelVersion, PromptSet


class BaseModelSerializer(serializers.ModelSerializer):
    version_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = BaseModel
        fields = [
            "id",
            "name",
            "source",
            "revision",
            "pipeline_class",
            "default_settings",
            "description",
            "version_count",
            "created_at",
        ]


class ModelVersionSerializer(serializers.ModelSerializer):
    base_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    aliases = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "base_model", "name", "parent", "adapter", "produced_by_run", "aliases", "notes", "created_at"]


class PromptSetSerializer(serializers.ModelSerializer):
    prompt_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = PromptSet
        fields = ["id", "name", "split", "description", "prompt_count", "created_at"]


class BaseModelListView(generics.ListAPIView):
    """Registered base checkpoints."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = BaseModelSerializer
    queryset = selectors.base_models()


class ModelVersionListView(generics.ListAPIView):
    """Model versions with their lineage links and aliases."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = ModelVersionSerializer
    queryset = selectors.model_versions()
    filterset_fields = ["base_model"]


class PromptSetListView(generics.ListAPIView):
    """Prompt sets with their split and size."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = PromptSetSerializer
    queryset = selectors.prompt_sets()
    filterset_fields = ["split"]

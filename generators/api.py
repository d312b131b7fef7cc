"""REST API for base models, model versions, prompt sets and generated images.

Engineers register checkpoints and prompt sets; engineers and reviewers read everything and fetch
image files. Generation itself is a run: ``POST /api/v1/runs/ {"kind": "generate", ...}``.
"""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.permissions import EngineerWritesStaffReads, IsEngineerOrReviewer
from core.uploads import format_bytes
from core.validation import StrictSerializer
from generators import provenance, selectors, services
from generators.image_files import png_response
from generators.models import AliasChange, BaseModel, GeneratedImage, ModelAlias, ModelVersion, PromptSet, Split
from generators.pipeline import SCHEDULERS
from generators.pipeline_classes import UnknownPipelineClass, check_pipeline_class, scheduler_problem


class BaseModelSerializer(serializers.ModelSerializer):
    version_count = serializers.IntegerField(read_only=True, default=1)
    family = serializers.CharField(read_only=True, help_text="flow, diffusion or unknown (from pipeline_class)")

    class Meta:
        model = BaseModel
        fields = [
            "id",
            "name",
            "source",
            "revision",
            "pipeline_class",
            "family",
            "default_settings",
            "description",
            "watermark",
            "version_count",
            "created_at",
        ]


class DefaultSettingsSerializer(StrictSerializer):
    scheduler = serializers.ChoiceField(choices=sorted(SCHEDULERS), required=False)
    steps = serializers.IntegerField(min_value=1, max_value=500, required=False)
    guidance_scale = serializers.FloatField(min_value=0.0, max_value=50.0, required=False)
    width = serializers.IntegerField(min_value=8, max_value=2048, required=False)
    height = serializers.IntegerField(min_value=8, max_value=2048, required=False)
    negative_prompt = serializers.CharField(max_length=1000, allow_blank=True, required=False)


class BaseModelCreateSerializer(StrictSerializer):
    name = serializers.SlugField(max_length=100)
    source = serializers.CharField(max_length=500, help_text="hub id (org/name) or local diffusers folder")
    revision = serializers.CharField(max_length=100, required=False, default="")
    pipeline_class = serializers.CharField(
        max_length=100, required=False, default="AutoPipelineForText2Image", help_text="a diffusers pipeline class"
    )
    default_settings = DefaultSettingsSerializer(required=False, default=dict)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    watermark = serializers.BooleanField(
        required=False, default=True, help_text="mark generated images with the invisible watermark"
    )

    def validate_pipeline_class(self, name: str) -> str:
        try:
            return check_pipeline_class(name, settings.EXTRA_PIPELINE_CLASSES)
        except UnknownPipelineClass as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict) -> dict:
        scheduler = attrs["default_settings"].get("scheduler")
        problem = scheduler and scheduler_problem(attrs["pipeline_class"], scheduler)
        if problem:
            raise serializers.ValidationError({"default_settings": {"scheduler": [problem + "."]}})
        return attrs


class BaseModelListView(generics.ListAPIView):
    """Registered base checkpoints; engineers register one (its ``base`` model version comes with it)."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = BaseModelSerializer

    def get_queryset(self):
        return selectors.base_models()

    @extend_schema(request=BaseModelCreateSerializer, responses={201: BaseModelSerializer})
    def post(self, request):
        data = BaseModelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        base = services.base_model_register(created_by=request.user, **data.validated_data)
        return Response(BaseModelSerializer(base).data, status=status.HTTP_201_CREATED)


class ModelVersionSerializer(serializers.ModelSerializer):
    base_model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    aliases = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "base_model", "name", "parent", "adapter", "produced_by_run", "aliases", "notes", "created_at"]


class ModelVersionListView(generics.ListAPIView):
    """Model versions with their lineage links and aliases."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = ModelVersionSerializer
    queryset = selectors.model_versions()
    filterset_fields = ["base_model"]


class PromptSetSerializer(serializers.ModelSerializer):
    prompt_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = PromptSet
        fields = ["id", "name", "split", "description", "prompt_count", "created_at"]


class PromptInputSerializer(StrictSerializer):
    text = serializers.CharField(max_length=2000)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {"text": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
                "required": ["text"],
            },
        ]
    }
)
class PromptField(serializers.Field):
    """A prompt given as a string or as ``{"text", "tags"}``."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = {"text": data}
        serializer = PromptInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def to_representation(self, value):
        return value


class PromptSetCreateSerializer(StrictSerializer):
    name = serializers.SlugField(max_length=100)
    split = serializers.ChoiceField(choices=Split.choices)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    prompts = serializers.ListField(child=PromptField(), min_length=1, max_length=100_000)


class PromptSetDetailSerializer(PromptSetSerializer):
    prompts = serializers.SerializerMethodField()

    class Meta(PromptSetSerializer.Meta):
        fields = [*PromptSetSerializer.Meta.fields, "prompts"]

    def get_prompts(self, prompt_set) -> list[dict]:
        return [{"id": p.pk, "text": p.text, "tags": p.tags} for p in selectors.prompts_of(prompt_set)]


class PromptSetListView(generics.ListAPIView):
    """Prompt sets with their split and size; engineers create one from a list of prompts."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = PromptSetSerializer
    queryset = selectors.prompt_sets()
    filterset_fields = ["split"]

    @extend_schema(request=PromptSetCreateSerializer, responses={201: PromptSetDetailSerializer})
    def post(self, request):
        data = PromptSetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prompt_set = services.prompt_set_create(created_by=request.user, **data.validated_data)
        return Response(PromptSetDetailSerializer(prompt_set).data, status=status.HTTP_201_CREATED)


class PromptSetDetailView(generics.RetrieveAPIView):
    """One prompt set with its prompts in order."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = PromptSetDetailSerializer
    queryset = selectors.prompt_sets()


class GeneratedImageSerializer(serializers.ModelSerializer):
    prompt = serializers.CharField(source="prompt.text")
    url = serializers.SerializerMethodField()

    class Meta:
        model = GeneratedImage
        fields = [
            "id",
            "model_version",
            "prompt",
            "seed",
            "settings",
            "width",
            "height",
            "sha256",
            "generation_run",
            "url",
            "created_at",
        ]

    def get_url(self, image) -> str:
        return f"/api/v1/images/{image.pk}/file/"


class GeneratedImageListView(generics.ListAPIView):
    """Generated images; filter by model version, prompt or generation run."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = GeneratedImageSerializer
    queryset = selectors.images()
    filterset_fields = ["model_version", "prompt", "generation_run", "seed"]


class GeneratedImageFileView(APIView):
    """The PNG of one generated image (engineers and reviewers; never a public media URL). Raters fetch the
    images they rate by their assignment's opaque token instead (``/api/v1/rating-images/``): image ids
    follow generation order and would unblind an arena."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        return png_response(get_object_or_404(selectors.images(), pk=pk))


class AliasChangeSerializer(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AliasChange
        fields = ["alias", "version", "previous_version", "changed_by", "reason", "changed_at"]


class AliasSerializer(serializers.ModelSerializer):
    version_name = serializers.CharField(source="version.__str__", read_only=True)
    history = serializers.SerializerMethodField()

    class Meta:
        model = ModelAlias
        fields = ["name", "version", "version_name", "updated_at", "history"]

    @extend_schema_field(AliasChangeSerializer(many=True))
    def get_history(self, alias) -> list:
        return AliasChangeSerializer(selectors.alias_history(alias.name)[:50], many=True).data


class AliasMoveSerializer(StrictSerializer):
    name = serializers.SlugField(max_length=50)
    version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all())
    reason = serializers.CharField(min_length=3, max_length=2000, help_text="why (kept in the audit log)")


class AliasListView(APIView):
    """Aliases (``champion``...) with their audit log; reviewers and engineers move one (promotion)."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(responses=AliasSerializer(many=True))
    def get(self, request):
        return Response(AliasSerializer(selectors.aliases(), many=True).data)

    @extend_schema(request=AliasMoveSerializer, responses={200: AliasSerializer})
    def post(self, request):
        data = AliasMoveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        alias = services.model_alias_set(updated_by=request.user, **data.validated_data)
        return Response(AliasSerializer(alias).data)


class ProvenanceUploadSerializer(StrictSerializer):
    file = serializers.FileField(help_text="an image (PNG, JPEG, WebP...) to identify")


class ProvenanceView(APIView):
    """Which version, prompt and seed made an uploaded image: from its PNG text chunks, else its invisible
    watermark (engineers, reviewers, admins). Reads only; a POST because it takes a file."""

    permission_classes = [IsEngineerOrReviewer]
    parser_classes = [JSONParser, MultiPartParser]  # JSON only to answer a missing file with a 400

    @extend_schema(
        request={"multipart/form-data": ProvenanceUploadSerializer},
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="identified, recognised_by, image, metadata, watermark, platform_instance, notes",
            ),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="{file: [not an image, or too large]}"),
        },
    )
    def post(self, request):
        data = ProvenanceUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        limit = settings.PROVENANCE_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise serializers.ValidationError(
                {"file": [f"The file is larger than the limit of {format_bytes(limit)} (PROVENANCE_MAX_UPLOAD_BYTES)."]}
            )
        try:
            image = provenance.open_image(upload, max_pixels=settings.PROVENANCE_MAX_PIXELS)
        except provenance.UnreadableImage as exc:
            raise serializers.ValidationError({"file": [str(exc)]}) from exc
        return Response(provenance.identify(image))

"""Core REST API: auth token, who-am-I, users, run kinds, runs (list, create, detail, cancel).

Views parse input with a small serializer, call one service or selector, and render the output.
"""

from __future__ import annotations

import mimetypes

import django_filters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from core import form_schema, login_throttle, people, run_kinds, run_presets, selectors, services
from core.models import AnnotatorGroup, Artifact, Invite, Run, RunKindName
from core.permissions import (
    EngineerWritesStaffReads,
    IsAuthenticatedUser,
    IsEngineer,
    RunStartAccess,
    may_start_run,
)
from core.roles import GROUP_ROLES, Role, user_roles
from core.run_states import RunState
from core.validation import StrictSerializer

# --- Auth ------------------------------------------------------------------------------------------


class TokenInputSerializer(StrictSerializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class AuthTokenView(APIView):
    """Exchange a username and password for an API token (for scripts and simulated annotators).

    Throttled per client address (``AUTH_THROTTLE_RATE``, counted in the shared cache) and, like the login
    forms, locked per account and per address after ``LOGIN_FAILURE_LIMIT`` failures (429 with Retry-After)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=TokenInputSerializer,
        responses={200: inline_serializer("TokenOutput", {"token": serializers.CharField()}), 429: None},
        auth=[],
    )
    def post(self, request):
        TokenInputSerializer(data=request.data).is_valid(raise_exception=True)
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        if not credentials.is_valid():
            if getattr(request, "axes_locked_out", False):  # set by django-axes while authenticating
                return Response(
                    {"detail": login_throttle.lockout_message()},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(login_throttle.lockout_seconds())},
                )
            raise ValidationError(credentials.errors)
        token, _ = Token.objects.get_or_create(user=credentials.validated_data["user"])
        return Response({"token": token.key})


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.ChoiceField(choices=[r.value for r in Role]))


def _roles_of(user) -> list[str]:
    return sorted(role.value for role in user_roles(user))


class MeView(APIView):
    """The caller's identity and roles."""

    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        user = request.user
        return Response(MeSerializer({"id": user.pk, "username": user.username, "roles": _roles_of(user)}).data)


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    is_active = serializers.BooleanField()
    roles = serializers.SerializerMethodField()

    def get_roles(self, user) -> list[str]:
        return people.listed_roles(user)


class UserCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="left out or blank: a generated password, answered once as generated_password",
    )
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=[role.value for role in GROUP_ROLES]),
        default=[Role.ANNOTATOR.value],
        help_text="engineers may give annotator and reviewer; admins any",
    )

    def validate_username(self, value: str) -> str:
        try:
            return people.check_new_username(value)
        except DjangoValidationError as exc:
            raise ValidationError(exc.messages) from exc

    def validate(self, attrs):
        if not people.may_grant(self.context["request"].user, [Role(r) for r in attrs["roles"]]):
            raise PermissionDenied("Only admins may create engineers.")
        if attrs.get("password"):
            try:
                people.check_new_password(attrs["password"], attrs["username"])
            except DjangoValidationError as exc:
                raise ValidationError({"password": exc.messages}) from exc
        return attrs


class UserCreatedSerializer(UserSerializer):
    generated_password = serializers.CharField(
        required=False, help_text="only when the request gave no password; shown once, never stored in clear"
    )


class UserListView(generics.ListCreateAPIView):
    """Users and their roles (engineers and admins); POST creates an account (engineers: annotators and
    reviewers; admins: any role), with a generated password when none is given."""

    permission_classes = [IsEngineer]
    serializer_class = UserSerializer

    def get_queryset(self):
        return selectors.users_with_roles()

    @extend_schema(request=UserCreateSerializer, responses={201: UserCreatedSerializer})
    def post(self, request):
        data = UserCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        generated = None if data.validated_data.get("password") else people.generated_password()
        user = services.user_create(
            username=data.validated_data["username"],
            password=generated or data.validated_data["password"],
            roles=data.validated_data["roles"],
        )
        body = UserSerializer(user).data
        if generated:
            body["generated_password"] = generated
        return Response(body, status=status.HTTP_201_CREATED)


class _UserActiveView(APIView):
    permission_classes = [IsEngineer]
    active: bool

    @extend_schema(request=None, responses={200: UserSerializer, 404: None})
    def post(self, request, pk: int):
        user = get_object_or_404(get_user_model(), pk=pk)
        if user.pk == request.user.pk:
            raise PermissionDenied("Nobody deactivates or reactivates themselves.")
        if not people.may_manage(request.user, user):
            raise PermissionDenied("Engineers manage annotators and reviewers only; admins manage anybody.")
        services.user_set_active(user=user, active=self.active)
        return Response(UserSerializer(user).data)


class UserDeactivateView(_UserActiveView):
    """Deactivate a user: their votes stay; they can no longer log in or use a token."""

    active = False


class UserReactivateView(_UserActiveView):
    """Reactivate a deactivated user."""

    active = True


class AnnotatorGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    members = serializers.SerializerMethodField(help_text="usernames")

    def get_members(self, group) -> list[str]:
        return sorted(member.username for member in group.members.all())


def _members_field(help_text: str) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="username",
        many=True,
        required=False,
        default=list,
        queryset=get_user_model().objects.filter(groups__name__in=[Role.ANNOTATOR, Role.REVIEWER]).distinct(),
        help_text=help_text,
    )


class AnnotatorGroupCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    members = _members_field("usernames of annotators or reviewers")


class AnnotatorGroupMembersSerializer(StrictSerializer):
    add = _members_field("usernames of annotators or reviewers to add")
    remove = serializers.SlugRelatedField(
        slug_field="username",
        many=True,
        required=False,
        default=list,
        queryset=get_user_model().objects.all(),
        help_text="usernames to remove",
    )


class AnnotatorGroupListView(APIView):
    """Annotator groups (named sets of annotators a campaign can be given); engineers read and create them."""

    permission_classes = [IsEngineer]

    @extend_schema(responses=AnnotatorGroupSerializer(many=True))
    def get(self, request):
        return Response(AnnotatorGroupSerializer(selectors.annotator_groups(), many=True).data)

    @extend_schema(request=AnnotatorGroupCreateSerializer, responses={201: AnnotatorGroupSerializer})
    def post(self, request):
        data = AnnotatorGroupCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = services.annotator_group_create(**data.validated_data)
        return Response(AnnotatorGroupSerializer(group).data, status=status.HTTP_201_CREATED)


class AnnotatorGroupMembersView(APIView):
    """Add and remove members of an annotator group (campaigns created earlier keep their annotators)."""

    permission_classes = [IsEngineer]

    @extend_schema(request=AnnotatorGroupMembersSerializer, responses={200: AnnotatorGroupSerializer, 404: None})
    def post(self, request, pk: int):
        group = get_object_or_404(selectors.annotator_groups(), pk=pk)
        data = AnnotatorGroupMembersSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group = services.annotator_group_members_change(group=group, **data.validated_data)
        return Response(AnnotatorGroupSerializer(selectors.annotator_groups().get(pk=group.pk)).data)


# --- Invite links ---------------------------------------------------------------------------------


class InviteSerializer(serializers.ModelSerializer):
    group = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    state = serializers.SerializerMethodField(help_text="pending, used, revoked or expired")
    used_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Invite
        fields = ["id", "note", "group", "created_by", "created_at", "expires_at", "state", "used_by", "used_at"]
        read_only_fields = fields

    def get_state(self, invite) -> str:
        return people.invite_state(invite, timezone.now())


class InviteCreateSerializer(StrictSerializer):
    group = serializers.SlugRelatedField(
        slug_field="name",
        queryset=AnnotatorGroup.objects.all(),
        required=False,
        allow_null=True,
        help_text="an annotator group's name: the new account joins it",
    )
    days = serializers.FloatField(
        min_value=0.01,
        max_value=people.INVITE_MAX_DAYS,
        default=people.INVITE_DAYS,
        help_text=f"how long the link stays valid (default {people.INVITE_DAYS} days)",
    )
    note = serializers.CharField(max_length=200, required=False, default="", help_text="whom it is for")


class InviteCreatedSerializer(InviteSerializer):
    token = serializers.CharField(help_text="shown once: only its hash is stored")
    url = serializers.CharField(help_text="the link to send to the invitee (single use)")

    class Meta(InviteSerializer.Meta):
        fields = [*InviteSerializer.Meta.fields, "token", "url"]


class InviteListView(APIView):
    """Invite links for new annotators (engineers and admins): single use, expiring; the invitee opens the link,
    chooses a username and password and gets an annotator account (in the invite's group, if any). POST answers
    the link once (only its token's hash is stored)."""

    permission_classes = [IsEngineer]

    @extend_schema(responses=InviteSerializer(many=True))
    def get(self, request):
        return Response(InviteSerializer(selectors.invites()[:500], many=True).data)

    @extend_schema(request=InviteCreateSerializer, responses={201: InviteCreatedSerializer})
    def post(self, request):
        data = InviteCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invite, token = services.invite_create(created_by=request.user, **data.validated_data)
        body = InviteSerializer(invite).data
        body["token"] = token
        body["url"] = request.build_absolute_uri(reverse("invite-accept", args=[token]))
        return Response(body, status=status.HTTP_201_CREATED)


class InviteRevokeView(APIView):
    """Withdraw an unused invite link (409 if it was used: deactivate the account instead)."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses={200: InviteSerializer, 404: None, 409: None})
    def post(self, request, pk: int):
        invite = get_object_or_404(selectors.invites(), pk=pk)
        if invite.used_at is not None:
            return Response(
                {"detail": f"Invite {pk} was already used by {invite.used_by}: deactivate that account instead."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(InviteSerializer(services.invite_revoke(invite=invite)).data)


# --- Runs ------------------------------------------------------------------------------------------


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    config = serializers.DictField(help_text="a partial config: the fields this preset sets")


class RunKindSerializer(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    description = serializers.CharField()
    config_fields = serializers.ListField(child=serializers.CharField())
    can_start = serializers.BooleanField(help_text="whether the caller may start runs of this kind")
    form = serializers.ListField(
        child=serializers.DictField(),
        help_text="the config's fields as form specs (core/form_schema.py): name, label, type (integer, number, "
        "boolean, choice, string, id, list, object), required, nullable, help_text, group, and where they apply "
        "default, min, max, min_exclusive, max_exclusive, min_length, max_length, choices, model, item, children; "
        "id fields of kinds the caller may start offer existing rows as choices",
    )
    presets = PresetSerializer(many=True, help_text="named partial configs (kinds the caller may start)")


class RunKindListView(APIView):
    """The run kinds this installation can execute: their config fields and form specs, whether the caller may
    start each (engineers any; reviewers ``generate`` and ``evaluate``), and their presets."""

    permission_classes = [EngineerWritesStaffReads]

    @extend_schema(responses=RunKindSerializer(many=True))
    def get(self, request):
        rows_cache: dict = {}
        kinds = []
        for k in run_kinds.available():
            can_start = may_start_run(request.user, k.name)
            form = form_schema.describe_serializer(k.config_serializer)
            kinds.append(
                {
                    "name": k.name,
                    "queue": k.queue,
                    "description": k.description,
                    "config_fields": sorted(k.config_serializer().fields),
                    "can_start": can_start,
                    "form": form_schema.with_id_choices(form, request.user, rows_cache) if can_start else form,
                    "presets": run_presets.presets_for(k.name) if can_start else [],
                }
            )
        return Response(RunKindSerializer(kinds, many=True).data)


class RunSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username",
        default=None,
        read_only=True,
        allow_null=True,
        help_text="who started the run (CLI runs: --user, $PLATFORM_USER, the login name or the first admin)",
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "kind",
            "state",
            "progress",
            "progress_message",
            "attempts",
            "queue",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["id", "name", "kind", "size", "sha256", "metadata", "updated_at"]


class RunDetailSerializer(RunSerializer):
    metrics = serializers.SerializerMethodField()
    artifacts = ArtifactSerializer(many=True, read_only=True)

    class Meta(RunSerializer.Meta):
        fields = [
            *RunSerializer.Meta.fields,
            "config",
            "result",
            "error",
            "state_history",
            "max_attempts",
            "worker",
            "heartbeat_at",
            "celery_task_id",
            "metrics",
            "artifacts",
        ]

    def get_metrics(self, run) -> dict[str, list[list[float]]]:
        return selectors.run_metric_series(run=run)


class RunCreateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=RunKindName.choices)
    config = serializers.DictField(required=False, default=dict)
    max_attempts = serializers.IntegerField(min_value=1, max_value=10, default=3)


class RunFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=RunKindName.choices)
    state = django_filters.ChoiceFilter(choices=RunState.choices)
    created_by = django_filters.CharFilter(field_name="created_by__username")

    class Meta:
        model = Run
        fields = ["kind", "state", "created_by"]


class RunListCreateView(generics.ListAPIView):
    """List runs (engineers, reviewers; filter by kind, state, created_by) or start one (engineers; reviewers
    only ``generate`` and ``evaluate``)."""

    permission_classes = [RunStartAccess]
    serializer_class = RunSerializer
    filterset_class = RunFilter

    def get_queryset(self):
        return selectors.runs_visible_to(self.request.user)

    @extend_schema(request=RunCreateSerializer, responses={201: RunDetailSerializer})
    def post(self, request):
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.run_create(created_by=request.user, **data.validated_data)
        except ValidationError as exc:
            raise ValidationError({"config": exc.detail}) from exc
        return Response(RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetailView(generics.RetrieveAPIView):
    """One run with its config, state history, every metric series and its artifacts."""

    permission_classes = [EngineerWritesStaffReads]
    serializer_class = RunDetailSerializer

    def get_queryset(self):
        return selectors.runs_visible_to(self.request.user).prefetch_related("artifacts")


class RunCancelView(APIView):
    """Ask a run to stop: a queued run is cancelled at once, a running one goes through cancelling."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses={202: RunDetailSerializer, 409: None})
    def post(self, request, pk: int):
        run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
        run = services.run_request_cancel(run_id=run.pk, requested_by=request.user)
        return Response(RunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ArtifactDownloadView(APIView):
    """The file of one run artifact (LoRA adapter, zipped reward model, checkpoint...), streamed as an
    attachment. Engineers and admins only: reviewers see artifacts' names, sizes and hashes on a run's detail,
    not the trained weights themselves."""

    permission_classes = [IsEngineer]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        artifact = get_object_or_404(selectors.artifacts_visible_to(request.user), pk=pk)
        try:
            handle = artifact.file.open("rb")
        except FileNotFoundError:
            raise NotFound(f"The file of artifact {artifact.pk} is missing from storage.") from None
        response = FileResponse(
            handle,
            as_attachment=True,
            filename=artifact.name,
            content_type=mimetypes.guess_type(artifact.name)[0] or "application/octet-stream",
        )
        response["ETag"] = f'"{artifact.sha256}"'
        return response

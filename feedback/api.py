"""Feedback REST contract: campaigns (with progress), the next pair to rate, votes."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors as core_selectors
from core.ids import BoundedPrimaryKeyRelatedField, IdField
from core.permissions import IsEngineer, IsEngineerOrReviewer, may_create_campaign
from core.roles import Role, has_role
from core.validation import StrictSerializer
from feedback import handout, outlook, preview, selectors, services, shown_images
from feedback.blocklist import MAX_TERMS, TERM_MAX_LENGTH, BlocklistError, normalise_terms
from feedback.criteria import (
    ANSWER_CHOICES,
    KEY_MAX_LENGTH,
    MAX_QUESTIONS,
    TEXT_MAX_LENGTH,
    CriteriaError,
    validate_questions,
)
from feedback.leaderboard_serializers import LeaderboardSerializer
from feedback.models import REFIT_EVERY_RANGE, Campaign, Purpose, Selection
from feedback.services import SUBMITTED_CHOICES
from generators import selectors as generator_selectors
from generators.image_files import png_response
from generators.models import ModelVersion, PromptSet
from generators.run_configs import SamplerSettingsSerializer
from generators.safety_screens import screen_names
from generators.sampler_settings import SettingsRequest

CRITERION_HELP = "the question's key (default: the campaign's first question)"


class CampaignCreateAccess(BasePermission):
    """Creating (and previewing) a campaign: engineers any purpose, reviewers arena campaigns only."""

    message = "Only ML engineers may create collect campaigns; reviewers may create arena campaigns."

    def has_permission(self, request, view) -> bool:
        purpose = request.data.get("purpose") if isinstance(request.data, dict) else None
        return may_create_campaign(request.user, purpose if isinstance(purpose, str) else "")


class CampaignAccess(CampaignCreateAccess):
    """Annotators, engineers and reviewers read campaigns; engineers create them, reviewers arena campaigns."""

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return has_role(request.user, Role.ANNOTATOR, Role.ENGINEER, Role.REVIEWER)
        return super().has_permission(request, view)


class Raters(BasePermission):
    """Annotators rate pairs; reviewers rate too (arena campaigns they are assigned to). The campaign's list of
    annotators decides who may rate which campaign."""

    message = "Only annotators (and reviewers, in campaigns they are assigned to) rate pairs."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, Role.ANNOTATOR, Role.REVIEWER)


class CampaignSerializer(serializers.ModelSerializer):
    prompt_set = serializers.SlugRelatedField(slug_field="name", read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "purpose",
            "status",
            "status_note",
            "prompt_set",
            "votes_per_pair",
            "gold_rate",
            "lease_seconds",
            "selection",
            "refit_every",
            "images_per_prompt",
            "sampler_settings",
            "questions",
            "blocked_terms",
            "safety_screen",
            "preparing_run",
            "progress",
            "created_at",
        ]

    def get_progress(self, campaign) -> dict:
        return selectors.campaign_progress(campaign, self.context["request"].user)


class CampaignCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    prompt_set = BoundedPrimaryKeyRelatedField(queryset=PromptSet.objects.all())
    model_versions = BoundedPrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), many=True)
    annotators = serializers.SlugRelatedField(
        slug_field="username",
        many=True,
        required=False,
        default=list,
        queryset=get_user_model().objects.filter(groups__name__in=[Role.ANNOTATOR, Role.REVIEWER]).distinct(),
        help_text="usernames of annotators (or reviewers) who may rate this campaign",
    )
    annotator_groups = serializers.SlugRelatedField(
        slug_field="name",
        many=True,
        required=False,
        default=list,
        queryset=core_selectors.annotator_groups(),
        help_text="names of annotator groups: their active annotators and reviewers are added to annotators",
    )
    votes_per_pair = serializers.IntegerField(min_value=1, max_value=100, default=3)
    gold_rate = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    lease_seconds = serializers.IntegerField(min_value=10, max_value=86_400, default=300)
    selection = serializers.ChoiceField(
        choices=Selection.choices,
        default=Selection.RANDOM,
        help_text="hand-out order of pairs without votes: random (creation order) or uncertainty (the pairs the "
        "campaign's quick reward model is least sure of first)",
    )
    refit_every = serializers.IntegerField(
        min_value=REFIT_EVERY_RANGE[0],
        max_value=REFIT_EVERY_RANGE[1],
        default=200,
        help_text="valid votes between two refits of the quick reward model (priorities and learning curve)",
    )
    images_per_prompt = serializers.IntegerField(
        min_value=1,
        max_value=64,
        required=False,
        help_text="images per version and prompt to pair (generated when missing); default 2 for one version, else 1",
    )
    sampler_settings = SamplerSettingsSerializer(
        required=False, default=dict, help_text="settings of the images to pair (absent keys: each version's default)"
    )
    questions = serializers.JSONField(
        required=False,
        help_text="1-4 questions asked about each pair, in order: [{key: a slug (the votes' criterion), text}]; "
        "default: one question (key 'overall')",
    )
    blocked_terms = serializers.ListField(
        child=serializers.CharField(max_length=TERM_MAX_LENGTH),
        max_length=MAX_TERMS,
        required=False,
        default=list,
        help_text="words or phrases (whole words, any case): prompts that contain one are left out of the campaign",
    )
    safety_screen = serializers.ChoiceField(
        choices=[""],
        required=False,
        default="",
        help_text="a registered safety screen that checks every image before annotators see it (blank: none); "
        "images it flags are withheld for an engineer's review",
    )
    open_now = serializers.BooleanField(default=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["safety_screen"].choices = ["", *screen_names()]  # registered now (plug-ins can change)

    def validate_blocked_terms(self, terms: list[str]) -> list[str]:
        try:
            return normalise_terms(terms)
        except BlocklistError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        attrs = super().validate(attrs)
        groups = attrs.pop("annotator_groups", [])
        if groups:
            raters = self.fields["annotators"].child_relation.get_queryset()
            members = raters.filter(annotator_groups__in=groups, is_active=True)
            attrs["annotators"] = list(dict.fromkeys([*attrs.get("annotators", []), *members]))
        return attrs

    def validate_questions(self, questions) -> list[dict[str, str]]:
        try:
            return validate_questions(questions)
        except CriteriaError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_sampler_settings(self, values: dict) -> SettingsRequest:
        return SettingsRequest.from_config(values)

    @classmethod
    def form_extra_fields(cls) -> list[dict]:
        """``questions`` (untyped JSON here, checked by ``feedback.criteria``) as rows of key and text for the
        campaign form (``core/form_schema.py``)."""
        declared = cls().fields["questions"]
        return [
            {
                "name": "questions",
                "label": "Questions",
                "type": "list",
                "required": False,
                "nullable": False,
                "help_text": str(declared.help_text),
                "group": None,
                "min_length": 1,
                "max_length": MAX_QUESTIONS,
                "item": {
                    "name": "",
                    "label": "Question",
                    "type": "object",
                    "required": True,
                    "nullable": False,
                    "help_text": "",
                    "group": None,
                    "children": [
                        {
                            "name": "key",
                            "label": "Key",
                            "type": "string",
                            "required": True,
                            "nullable": False,
                            "help_text": "a slug: the votes' criterion",
                            "group": None,
                            "max_length": KEY_MAX_LENGTH,
                        },
                        {
                            "name": "text",
                            "label": "Text",
                            "type": "string",
                            "required": True,
                            "nullable": False,
                            "help_text": "what annotators are asked",
                            "group": None,
                            "max_length": TEXT_MAX_LENGTH,
                        },
                    ],
                },
            }
        ]


class CampaignPreviewInputSerializer(CampaignCreateSerializer):
    """The create form's fields; ``name`` may still be blank (a preview creates nothing)."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class PreviewImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model_version = serializers.IntegerField(source="model_version_id")
    seed = serializers.IntegerField()
    url = serializers.SerializerMethodField()

    def get_url(self, image) -> str:
        return reverse("api-image-file", args=[image.pk])


class PreviewPairSerializer(serializers.Serializer):
    prompt = serializers.CharField()
    image_a = PreviewImageSerializer()
    image_b = PreviewImageSerializer()


class CampaignPreviewSerializer(serializers.Serializer):
    images_per_prompt = serializers.IntegerField()
    images_wanted = serializers.IntegerField(help_text="versions × prompts × images per prompt")
    images_missing = serializers.IntegerField(
        help_text="images that do not exist yet: opening the campaign starts a generate run for them (preparing)"
    )
    pairs_now = serializers.IntegerField(help_text="pairs the images that exist now make")
    prompts_blocked = serializers.IntegerField(help_text="prompts of the set the blocklist leaves out")
    examples = PreviewPairSerializer(many=True)


class CampaignPreviewView(APIView):
    """A few pairs the campaign described by the body (the create form's fields) would show, from images that exist
    now, and how many images it would still generate. Creates nothing; the same 400s as the create."""

    permission_classes = [CampaignCreateAccess]

    @extend_schema(request=CampaignPreviewInputSerializer, responses=CampaignPreviewSerializer)
    def post(self, request):
        data = CampaignPreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        result = preview.campaign_preview(
            purpose=fields["purpose"],
            prompt_set=fields["prompt_set"],
            model_versions=fields["model_versions"],
            images_per_prompt=fields.get("images_per_prompt"),
            sampler_settings=fields.get("sampler_settings"),
            blocked_terms=fields["blocked_terms"],
        )
        return Response(CampaignPreviewSerializer(result).data)


class CampaignOpenView(APIView):
    """Open a draft or closed campaign (a closed one with pairs opens at once, votes kept; one without pairs
    generates its missing images first, ``preparing``). 409 while it is preparing."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=CampaignSerializer)
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        campaign = services.campaign_reopen(campaign_id=campaign.pk, started_by=request.user)
        return Response(CampaignSerializer(campaign, context={"request": request}).data)


class CampaignCloseView(APIView):
    """Close a campaign: nothing more is handed out; pairs and votes are kept and ``open/`` opens it again."""

    permission_classes = [IsEngineer]

    @extend_schema(request=None, responses=CampaignSerializer)
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        campaign = services.campaign_close(campaign_id=campaign.pk)
        return Response(CampaignSerializer(campaign, context={"request": request}).data)


class CampaignListView(APIView):
    """Campaigns the caller may annotate (annotators) or all campaigns (staff), with progress."""

    permission_classes = [CampaignAccess]

    @extend_schema(responses=CampaignSerializer(many=True))
    def get(self, request):
        campaigns = selectors.with_progress(selectors.campaigns_for(request.user), request.user)
        return Response(CampaignSerializer(campaigns, many=True, context={"request": request}).data)

    @extend_schema(request=CampaignCreateSerializer, responses={201: CampaignSerializer})
    def post(self, request):
        data = CampaignCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = services.campaign_create(created_by=request.user, **data.validated_data)
        return Response(CampaignSerializer(campaign, context={"request": request}).data, status=status.HTTP_201_CREATED)


class ShownImageSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="the image, named by an opaque per-assignment token (no image id)")


class NextPairSerializer(serializers.Serializer):
    assignment = serializers.IntegerField()
    pair = serializers.IntegerField()
    prompt = serializers.CharField()
    left = ShownImageSerializer()
    right = ShownImageSerializer()
    expires_at = serializers.DateTimeField()


def _next_pair_body(lease: handout.Lease) -> dict:
    """The ``next/`` response body (plain data: this runs on every request of the annotators' hot path)."""
    return {
        "assignment": lease.assignment,
        "pair": lease.pair,
        "prompt": lease.prompt,
        "left": {"url": shown_images.image_url(lease.image_token, "left")},
        "right": {"url": shown_images.image_url(lease.image_token, "right")},
        "expires_at": lease.expires_at,
    }


def _lease_next(user, campaign, after: int | None) -> dict | None:
    lease = handout.next_assignment(annotator=user, campaign=campaign, after=after)
    return None if lease is None else _next_pair_body(lease)


class CampaignNextView(APIView):
    """Lease the next pair to rate: 200 with the pair, or 204 when nothing is left for the caller."""

    permission_classes = [Raters]

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="the assignment on screen: lease the one after it")],
        responses={200: NextPairSerializer, 204: None},
    )
    def get(self, request, pk: int):
        campaign = selectors.campaign_to_rate(request.user, pk=pk)
        if campaign is None:
            raise NotFound("No open campaign with this id that you may rate.")
        after = request.query_params.get("after")
        if after is not None and not after.isdigit():
            raise ValidationError({"after": ["An assignment id."]})
        body = _lease_next(request.user, campaign, int(after) if after else None)
        if body is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(body)


class CampaignOutlookView(APIView):
    """Why you have (or have not) something to rate in this campaign now, and when to come back."""

    permission_classes = [Raters]

    @extend_schema(
        responses=inline_serializer(
            "RatingOutlook",
            {
                "state": serializers.ChoiceField(choices=outlook.STATES),
                "pairs_needing_votes": serializers.IntegerField(),
                "open_to_you": serializers.IntegerField(),
                "leased_by_others": serializers.IntegerField(),
                "seen_by_you": serializers.IntegerField(),
                "stalled": serializers.IntegerField(),
                "retry_at": serializers.DateTimeField(allow_null=True),
                "message": serializers.CharField(),
            },
        )
    )
    def get(self, request, pk: int):
        campaign = selectors.campaign_to_rate(request.user, pk=pk)
        if campaign is None:
            raise NotFound("No open campaign with this id that you may rate.")
        return Response(outlook.rating_outlook(campaign, request.user).to_dict())


class RatingImageView(APIView):
    """The PNG shown on one side of your assignment, named by the token ``next/`` gave you: 404 alike for a
    token that does not exist and one that is not yours."""

    permission_classes = [Raters]

    @extend_schema(
        parameters=[
            OpenApiParameter("token", str, OpenApiParameter.PATH, description="from the pair's `next/` answer"),
            OpenApiParameter("side", str, OpenApiParameter.PATH, enum=list(shown_images.SIDES)),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, 404: None},
    )
    def get(self, request, token: str, side: str):
        image_id = shown_images.shown_image_id(user=request.user, image_token=token, side=side)
        if image_id is None:
            raise NotFound("No such image among your assignments.")
        return png_response(generator_selectors.image_file_of(image_id))


class VoteInputSerializer(StrictSerializer):
    assignment = IdField()
    choice = serializers.ChoiceField(
        choices=SUBMITTED_CHOICES,
        required=False,
        help_text="the answer of a one-question campaign; skip skips the pair (every question)",
    )
    answers = serializers.DictField(
        child=serializers.ChoiceField(choices=ANSWER_CHOICES),
        required=False,
        help_text="one answer per question of the campaign (criterion key -> left, right, tie or both_bad)",
    )
    seconds = serializers.FloatField(min_value=0.0, max_value=86_400.0, required=False, allow_null=True, default=None)
    next = serializers.BooleanField(
        default=False,
        help_text="also lease the next pair of the same campaign and return it as `next` (one request per vote)",
    )
    after = IdField(
        required=False,
        allow_null=True,
        default=None,
        help_text="with `next`: the assignment already on screen or preloaded; the next pair is the one after it",
    )

    def validate_answers(self, answers: dict) -> dict:
        if not 1 <= len(answers) <= MAX_QUESTIONS:
            raise serializers.ValidationError(f"Between 1 and {MAX_QUESTIONS} answers.")
        return answers

    def validate(self, attrs: dict) -> dict:
        if ("choice" in attrs) == ("answers" in attrs):
            raise serializers.ValidationError({"choice": ["Send either choice or answers (one per question)."]})
        return attrs


class VoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    assignment = serializers.IntegerField(source="assignment_id")
    pair = serializers.IntegerField(source="pair_id")
    choice = serializers.CharField(
        source="submitted", help_text="what was pressed for the first question (skip: the whole pair was skipped)"
    )
    answers = serializers.DictField(
        child=serializers.CharField(), help_text="what was pressed for each question (criterion key -> choice)"
    )
    seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    revealed = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="arena votes of reviewers only: which model version was shown left and right",
    )
    next = NextPairSerializer(
        required=False,
        allow_null=True,
        help_text="when `next` was asked for: the next pair (as `next/` returns it), or null when nothing is left",
    )


def _vote_body(votes: list) -> dict:
    """A submission's votes (one per question) as ``VoteSerializer`` documents them (plain data: the hot path)."""
    vote = votes[0]
    return {
        "id": vote.pk,
        "assignment": vote.assignment_id,
        "pair": vote.pair_id,
        "choice": vote.submitted,
        "answers": {each.criterion: each.submitted for each in votes},
        "seconds": vote.seconds,
        "created_at": vote.created_at,
    }


class VoteCreateView(APIView):
    """Vote on your assignment: 201 new, 200 the same vote again, 409 a different vote or a lost lease."""

    permission_classes = [Raters]

    @extend_schema(request=VoteInputSerializer, responses={201: VoteSerializer, 200: VoteSerializer, 409: None})
    def post(self, request):
        data = VoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        votes, created = services.vote_submit_answers(
            annotator=request.user,
            assignment_id=fields["assignment"],
            submitted=fields.get("choice"),
            answers=fields.get("answers"),
            seconds=fields["seconds"],
        )
        vote = votes[0]
        body = _vote_body(votes)
        if has_role(request.user, Role.REVIEWER):
            revealed = selectors.arena_sides_revealed(vote)
            if revealed is not None:
                body["revealed"] = revealed
        if fields["next"]:
            campaign = selectors.campaign_to_rate(request.user, pair=vote.pair_id)
            body["next"] = None if campaign is None else _lease_next(request.user, campaign, fields["after"])
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class CampaignQualityView(APIView):
    """Annotator quality and agreement for a campaign (``?threshold=0.7&min_gold=5`` flag annotators)."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("threshold", float),
            OpenApiParameter("min_gold", int),
            OpenApiParameter("criterion", str, description=CRITERION_HELP),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        params = QualityParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(selectors.campaign_quality(campaign, **params.validated_data))


class ActivityPointSerializer(serializers.Serializer):
    t = serializers.DateTimeField()
    votes = serializers.IntegerField()
    valid_votes = serializers.IntegerField()


class CampaignActivityView(APIView):
    """Votes over time for a campaign (cumulative, at most 120 points) with its progress."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(
        responses={
            200: inline_serializer(
                "CampaignActivity",
                {"progress": serializers.DictField(), "points": ActivityPointSerializer(many=True)},
            )
        }
    )
    def get(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return Response(
            {
                "progress": selectors.campaign_progress(campaign, request.user),
                "points": selectors.votes_over_time(campaign),
            }
        )


class QualityParamsSerializer(serializers.Serializer):
    threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.7)
    min_gold = serializers.IntegerField(min_value=1, max_value=10_000, default=5)
    criterion = serializers.CharField(max_length=100, required=False, help_text=CRITERION_HELP)


class GoldInputSerializer(StrictSerializer):
    pair = IdField()
    choice = serializers.ChoiceField(choices=["a", "b", "tie"])


class CampaignGoldView(APIView):
    """Mark a pair of the campaign as gold with its known answer (against images a/b)."""

    permission_classes = [IsEngineer]

    @extend_schema(request=GoldInputSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        data = GoldInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = get_object_or_404(campaign.pairs, pk=data.validated_data["pair"])
        pair = services.pair_mark_gold(pair=pair, choice=data.validated_data["choice"])
        return Response({"pair": pair.pk, "is_gold": pair.is_gold, "gold_choice": pair.gold_choice})


NOT_AN_ARENA = "Campaign {id} is a {purpose} campaign: leaderboards rank the model versions of an arena campaign."


class LeaderboardParamsSerializer(StrictSerializer):
    campaign = IdField()
    both_bad = serializers.ChoiceField(choices=["tie", "exclude"], default="tie")
    resamples = serializers.IntegerField(min_value=100, max_value=10_000, default=1000)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    criterion = serializers.CharField(max_length=100, required=False, help_text=CRITERION_HELP)


class LeaderboardView(APIView):
    """Bradley–Terry leaderboard of a campaign's model versions (keyed by version id): ratings with bootstrap 95%
    intervals, ranks, the pairwise win-rate matrix with counts, and per pair a verdict and whether the votes so
    far are enough."""

    permission_classes = [IsEngineerOrReviewer]

    @extend_schema(
        parameters=[
            OpenApiParameter("campaign", int, required=True),
            OpenApiParameter("both_bad", str, enum=["tie", "exclude"]),
            OpenApiParameter("resamples", int),
            OpenApiParameter("seed", int),
            OpenApiParameter("criterion", str, description=CRITERION_HELP),
        ],
        responses={200: LeaderboardSerializer},
    )
    def get(self, request):
        params = LeaderboardParamsSerializer(data=request.query_params.dict())
        params.is_valid(raise_exception=True)
        campaign = get_object_or_404(Campaign, pk=params.validated_data["campaign"])
        if campaign.purpose != Purpose.ARENA:
            raise ValidationError({"campaign": [NOT_AN_ARENA.format(id=campaign.pk, purpose=campaign.purpose)]})
        return Response(
            selectors.campaign_leaderboard(
                campaign,
                both_bad=params.validated_data["both_bad"],
                n_resamples=params.validated_data["resamples"],
                seed=params.validated_data["seed"],
                criterion=params.validated_data.get("criterion"),
            )
        )

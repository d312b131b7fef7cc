"""``GET /api/v1/``: the API root, a map of the collections (so that a script or a browser can start there)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from core.permissions import IsAuthenticatedUser

# (key in the answer, URL name): the API's collections; each endpoint still enforces its own roles.
COLLECTIONS: tuple[tuple[str, str], ...] = (
    ("me", "api-me"),
    ("auth_token", "api-auth-token"),
    ("users", "api-users"),
    ("run_kinds", "api-run-kinds"),
    ("runs", "api-runs"),
    ("base_models", "api-base-models"),
    ("model_versions", "api-model-versions"),
    ("aliases", "api-aliases"),
    ("prompt_sets", "api-prompt-sets"),
    ("images", "api-images"),
    ("campaigns", "api-campaigns"),
    ("votes", "api-votes"),
    ("datasets", "api-datasets"),
    ("reward_models", "api-reward-models"),
    ("schema", "api-schema"),
    ("docs", "api-docs"),
)


class ApiRootView(APIView):
    """Links to every collection of the API and to its schema and interactive docs."""

    permission_classes = [IsAuthenticatedUser]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({key: reverse(name, request=request) for key, name in COLLECTIONS})

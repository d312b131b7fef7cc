from django.urls import path

from core import api
from core.metrics_csv import RunMetricsCsvView

urlpatterns = [
    path("auth/token/", api.AuthTokenView.as_view(), name="api-auth-token"),
    path("me/", api.MeView.as_view(), name="api-me"),
    path("users/", api.UserListView.as_view(), name="api-users"),
    path("users/<id:pk>/deactivate/", api.UserDeactivateView.as_view(), name="api-user-deactivate"),
    path("users/<id:pk>/reactivate/", api.UserReactivateView.as_view(), name="api-user-reactivate"),
    path("annotator-groups/", api.AnnotatorGroupListView.as_view(), name="api-annotator-groups"),
    path("invites/", api.InviteListView.as_view(), name="api-invites"),
    path("invites/<id:pk>/revoke/", api.InviteRevokeView.as_view(), name="api-invite-revoke"),
    path(
        "annotator-groups/<id:pk>/members/", api.AnnotatorGroupMembersView.as_view(), name="api-annotator-group-members"
    ),
    path("run-kinds/", api.RunKindListView.as_view(), name="api-run-kinds"),
    path("runs/", api.RunListCreateView.as_view(), name="api-runs"),
    path("runs/metrics.csv", RunMetricsCsvView.as_view(), name="api-run-metrics-csv"),
    path("runs/<id:pk>/", api.RunDetailView.as_view(), name="api-run-detail"),
    path("runs/<id:pk>/cancel/", api.RunCancelView.as_view(), name="api-run-cancel"),
    path("artifacts/<id:pk>/download/", api.ArtifactDownloadView.as_view(), name="api-artifact-download"),
]

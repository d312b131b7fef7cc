from django.urls import path

from rewards import api, curve_api

urlpatterns = [
    path("datasets/", api.DatasetListView.as_view(), name="api-datasets"),
    path("datasets/<id:pk>/", api.DatasetDetailView.as_view(), name="api-dataset-detail"),
    path("campaigns/<id:pk>/audit-campaign/", api.AuditCampaignView.as_view(), name="api-audit-campaign"),
    path(
        "campaigns/<id:pk>/learning-curve/",
        curve_api.CampaignLearningCurveView.as_view(),
        name="api-campaign-learning-curve",
    ),
    path("reward-models/", api.RewardModelListView.as_view(), name="api-reward-models"),
    path("reward-models/<id:pk>/", api.RewardModelDetailView.as_view(), name="api-reward-model-detail"),
]

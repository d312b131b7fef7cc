from django.urls import path

from feedback import api

urlpatterns = [
    path("campaigns/", api.CampaignListView.as_view(), name="api-campaigns"),
    path("campaigns/<int:pk>/next/", api.CampaignNextView.as_view(), name="api-campaign-next"),
    path("votes/", api.VoteCreateView.as_view(), name="api-votes"),
]

from django.urls import path

from feedback import api, safety_api

urlpatterns = [
    path("campaigns/", api.CampaignListView.as_view(), name="api-campaigns"),
    path("campaigns/preview/", api.CampaignPreviewView.as_view(), name="api-campaign-preview"),
    path("campaigns/<id:pk>/open/", api.CampaignOpenView.as_view(), name="api-campaign-open"),
    path("campaigns/<id:pk>/close/", api.CampaignCloseView.as_view(), name="api-campaign-close"),
    path("campaigns/<id:pk>/next/", api.CampaignNextView.as_view(), name="api-campaign-next"),
    path("campaigns/<id:pk>/outlook/", api.CampaignOutlookView.as_view(), name="api-campaign-outlook"),
    path("campaigns/<id:pk>/quality/", api.CampaignQualityView.as_view(), name="api-campaign-quality"),
    path("campaigns/<id:pk>/activity/", api.CampaignActivityView.as_view(), name="api-campaign-activity"),
    path("campaigns/<id:pk>/gold/", api.CampaignGoldView.as_view(), name="api-campaign-gold"),
    path("votes/", api.VoteCreateView.as_view(), name="api-votes"),
    path("rating-images/<str:token>/<str:side>/", api.RatingImageView.as_view(), name="api-rating-image"),
    path("leaderboard/", api.LeaderboardView.as_view(), name="api-leaderboard"),
    path("reports/", safety_api.ReportCreateView.as_view(), name="api-reports"),
    path("image-flags/", safety_api.ImageFlagListView.as_view(), name="api-image-flags"),
    path("image-flags/<id:pk>/review/", safety_api.ImageFlagReviewView.as_view(), name="api-image-flag-review"),
]

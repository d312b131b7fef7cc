from django.contrib.auth import views as auth_views
from django.urls import include, path

from frontend import invite_views, people_views, run_form_views, safety_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("annotate/<id:pk>/", views.annotate, name="annotate"),
    path("campaigns/", views.campaign_list, name="campaigns"),
    path("campaigns/new/", views.campaign_new, name="campaign-new"),
    path("campaigns/<id:pk>/", views.campaign_detail, name="campaign-detail"),
    path("campaigns/<id:pk>/audit/", views.campaign_audit, name="campaign-audit"),
    path("leaderboard/<id:pk>/", views.leaderboard, name="leaderboard"),
    path("", include("frontend.review_urls")),
    path("runs/", views.run_list, name="runs"),
    path("runs/compare/", views.run_compare, name="run-compare"),
    path("runs/new/", run_form_views.run_new, name="run-new"),
    path("runs/new/<slug:kind>/", run_form_views.run_new, name="run-new-kind"),
    path("runs/<id:pk>/", views.run_detail, name="run-detail"),
    path("people/", people_views.people_list, name="people"),
    path("people/<id:pk>/", people_views.person_detail, name="person-detail"),
    path("safety/", safety_views.safety_review, name="safety-review"),
    path("invite/<str:token>/", invite_views.invite_accept, name="invite-accept"),
]

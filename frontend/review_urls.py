"""Review pages: versions and lineage, the gallery, a version's reward scores (included by frontend.urls)."""

from django.urls import path

from frontend import review_views

urlpatterns = [
    path("versions/", review_views.version_list, name="versions"),
    path("versions/<id:pk>/", review_views.version_detail, name="version-detail"),
    path("versions/<id:pk>/eval-grid.png", review_views.version_grid, name="version-grid"),
    path("versions/<id:pk>/rewards/", review_views.version_rewards, name="version-rewards"),
    path("gallery/", review_views.gallery, name="gallery"),
]

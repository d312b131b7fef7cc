"""URLs: pages at the root, the REST API under /api/v1/, its schema and docs, the Django admin."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, register_converter
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.api_root import ApiRootView
from core.ids import IdConverter

register_converter(IdConverter, "id")  # <id:pk>: digits that fit a 64-bit primary key (else 404)

api_v1 = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("", include("core.urls")),
    path("", include("generators.urls")),
    path("", include("feedback.urls")),
    path("", include("rewards.urls")),
]

urlpatterns = [
    path("favicon.ico", RedirectView.as_view(url=static("frontend/favicon.svg"), permanent=True)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("frontend.urls")),
]

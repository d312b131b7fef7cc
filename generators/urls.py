from django.urls import path

from generators import api

urlpatterns = [
    path("base-models/", api.BaseModelListView.as_view(), name="api-base-models"),
    path("model-versions/", api.ModelVersionListView.as_view(), name="api-model-versions"),
    path("aliases/", api.AliasListView.as_view(), name="api-aliases"),
    path("prompt-sets/", api.PromptSetListView.as_view(), name="api-prompt-sets"),
    path("prompt-sets/<id:pk>/", api.PromptSetDetailView.as_view(), name="api-prompt-set-detail"),
    path("images/", api.GeneratedImageListView.as_view(), name="api-images"),
    path("images/<id:pk>/file/", api.GeneratedImageFileView.as_view(), name="api-image-file"),
    path("provenance/", api.ProvenanceView.as_view(), name="api-provenance"),
]

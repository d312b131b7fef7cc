from django.contrib import admin

from generators.models import (
    BaseModel,
    GeneratedImage,
    ImageScreening,
    ModelAlias,
    ModelVersion,
    Prompt,
    PromptSet,
    PromptSetItem,
)


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "pipeline_class", "watermark", "created_at"]
    search_fields = ["name", "source"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "base_model", "name", "parent", "produced_by_run", "created_at"]
    list_filter = ["base_model"]
    raw_id_fields = ["parent", "adapter", "produced_by_run"]

    def get_readonly_fields(self, request, obj=None):
        # Immutable once created: everything is read-only on the change page.
        return [f.name for f in self.model._meta.fields] if obj else []


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "updated_by", "updated_at"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "text", "split"]
    list_filter = ["split"]
    search_fields = ["text"]


class PromptSetItemInline(admin.TabularInline):
    model = PromptSetItem
    raw_id_fields = ["prompt"]
    extra = 0


@admin.register(PromptSet)
class PromptSetAdmin(admin.ModelAdmin):
    list_display = ["name", "split", "created_at"]
    inlines = [PromptSetItemInline]


@admin.register(GeneratedImage)
class GeneratedImageAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "prompt", "seed", "width", "height", "created_at"]
    list_filter = ["model_version"]
    raw_id_fields = ["model_version", "prompt", "generation_run"]


@admin.register(ImageScreening)
class ImageScreeningAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "screen", "flagged", "reason", "run", "created_at"]
    list_filter = ["screen", "flagged"]
    raw_id_fields = ["image", "run"]

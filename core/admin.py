from django.contrib import admin

from core.models import Artifact, MetricPoint, Run


class ArtifactInline(admin.TabularInline):
    model = Artifact
    extra = 0
    readonly_fields = ["name", "kind", "file", "sha256", "size", "updated_at"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "state", "progress", "attempts", "created_by", "created_at", "finished_at"]
    list_filter = ["kind", "state"]
    readonly_fields = [
        "state",
        "state_history",
        "attempts",
        "heartbeat_at",
        "worker",
        "celery_task_id",
        "result",
        "error",
    ]
    inlines = [ArtifactInline]


@admin.register(MetricPoint)
class MetricPointAdmin(admin.ModelAdmin):
    list_display = ["run", "key", "step", "value", "recorded_at"]
    list_filter = ["key"]
    raw_id_fields = ["run"]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "name", "kind", "size", "updated_at"]
    list_filter = ["kind"]
    raw_id_fields = ["run"]

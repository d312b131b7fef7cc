from django.contrib import admin

from feedback.models import Assignment, Campaign, ImageFlag, ImageReport, Pair, Vote


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "purpose", "status", "prompt_set", "votes_per_pair", "gold_rate", "created_at"]
    list_filter = ["purpose", "status"]
    filter_horizontal = ["model_versions", "annotators"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "image_a", "image_b", "is_gold", "gold_choice", "valid_votes", "withdrawn"]
    list_filter = ["campaign", "is_gold", "withdrawn"]
    raw_id_fields = ["image_a", "image_b"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "a_on_left", "status", "leased_at", "expires_at"]
    list_filter = ["status"]
    raw_id_fields = ["pair"]


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["id", "pair", "annotator", "criterion", "choice", "submitted", "seconds", "created_at"]
    list_filter = ["criterion", "choice"]
    raw_id_fields = ["assignment", "pair"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown, never edited here: reports and reviews go through ``feedback.safety`` (which keeps pairs in step)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ImageFlag)
class ImageFlagAdmin(ReadOnlyAdmin):
    list_display = ["id", "image", "state", "created_at", "reviewed_by", "reviewed_at"]
    list_filter = ["state"]


@admin.register(ImageReport)
class ImageReportAdmin(ReadOnlyAdmin):
    list_display = ["id", "flag", "reporter", "screen", "reason", "campaign", "created_at"]
    list_filter = ["reason", "screen"]

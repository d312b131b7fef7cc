from django.contrib import admin

from feedback.models import Assignment, Campaign, Pair, Vote


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "purpose", "status", "prompt_set", "votes_per_pair", "gold_rate", "created_at"]
    list_filter = ["purpose", "status"]
    filter_horizontal = ["model_versions", "annotators"]


@admin.register(Pair)
class PairAdmin(admin.ModelAdmin):
    list_display = ["id", "campaign", "image_a", "image_b", "is_gold", "gold_choice", "valid_votes"]
    list_filter = ["campaign", "is_gold"]
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

"""The documented shape of ``GET /api/v1/leaderboard/`` (drf-spectacular); the view renders the selector's dict.

Versions are keyed by id (``model``, ``model_a``, ``model_b``, ``winner``, ``matrix.models``); ``name`` fields are
for display. Decisions branch on ``verdict`` (a :class:`feedback.ratings.Verdict`) and ``enough_votes``, never on
``verdict_text``.
"""

from __future__ import annotations

from rest_framework import serializers

from feedback.ratings import Verdict


def _interval(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2, **kwargs)


def _square(child: serializers.Field) -> serializers.ListField:
    return serializers.ListField(child=serializers.ListField(child=child))


class LeaderboardVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="base/version, for display")


class LeaderboardRowSerializer(serializers.Serializer):
    model = serializers.IntegerField(help_text="model version id")
    name = serializers.CharField(help_text="base/version, for display")
    rank = serializers.IntegerField()
    strength = serializers.FloatField()
    strength_interval = _interval()
    rating = serializers.FloatField()
    rating_interval = _interval()
    separated = serializers.BooleanField()
    votes = serializers.IntegerField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True)


class LeaderboardPairSerializer(serializers.Serializer):
    model_a = serializers.IntegerField(help_text="model version id; the better-placed version of the pair")
    model_b = serializers.IntegerField(help_text="model version id")
    name_a = serializers.CharField()
    name_b = serializers.CharField()
    wins_a = serializers.IntegerField()
    wins_b = serializers.IntegerField()
    ties = serializers.IntegerField()
    total = serializers.IntegerField()
    win_rate_a = serializers.FloatField(allow_null=True)
    p_a_beats_b = serializers.FloatField(allow_null=True)
    p_interval = _interval(allow_null=True)
    separated = serializers.BooleanField()
    verdict = serializers.ChoiceField(choices=[v.value for v in Verdict])
    enough_votes = serializers.BooleanField(help_text="the votes decide the pair (verdict is not undecided)")
    winner = serializers.IntegerField(allow_null=True, help_text="model version id of the better one, when decided")
    verdict_text = serializers.CharField(help_text="the verdict in words, for display only")


class LeaderboardMatrixSerializer(serializers.Serializer):
    models = serializers.ListField(child=serializers.IntegerField(), help_text="model version ids, rows and columns")
    names = serializers.ListField(child=serializers.CharField())
    wins = _square(serializers.IntegerField())
    ties = _square(serializers.IntegerField())
    total = _square(serializers.IntegerField())
    win_rate = _square(serializers.FloatField(allow_null=True))


class LeaderboardVotesSerializer(serializers.Serializer):
    used = serializers.IntegerField()
    skipped = serializers.IntegerField(required=False)
    both_bad = serializers.IntegerField(required=False)
    both_bad_excluded = serializers.IntegerField(required=False)


class LeaderboardSettingsSerializer(serializers.Serializer):
    n_resamples = serializers.IntegerField()
    seed = serializers.IntegerField(allow_null=True)
    level = serializers.FloatField()
    both_bad = serializers.ChoiceField(choices=["tie", "exclude"])
    prior = serializers.FloatField()
    reference = serializers.IntegerField(allow_null=True)
    scale = serializers.CharField()


class LeaderboardSerializer(serializers.Serializer):
    campaign = serializers.IntegerField()
    purpose = serializers.CharField()
    criterion = serializers.CharField(help_text="the question ranked on (the campaign's first unless asked)")
    versions = LeaderboardVersionSerializer(many=True)
    models = LeaderboardRowSerializer(many=True)
    pairs = LeaderboardPairSerializer(many=True)
    matrix = LeaderboardMatrixSerializer(allow_null=True)
    votes = LeaderboardVotesSerializer()
    connected = serializers.BooleanField()
    settings = LeaderboardSettingsSerializer(required=False, help_text="absent while there are no votes")
